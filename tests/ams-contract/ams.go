// Package amscontract holds a conformance test that reads the registry's answers the
// way AMS does: through Go types that mirror AMS's public SDK (canonical/ams-sdk) field
// for field, decoded with plain encoding/json and unknown fields allowed, as the SDK's
// REST client does. When AMS's SDK changes these types, change them here first and let
// the test say what the daemon must follow.
package amscontract

import "encoding/json"

// The types below mirror api/ams/registry.go of the AMS SDK: same field names, Go types
// and tags. A JSON type the daemon gets wrong here is a decoding error in AMS.

// RegistryApplicationHooks mirrors the SDK type of the same name.
type RegistryApplicationHooks struct {
	Timeout string `json:"timeout" yaml:"timeout"`
}

// RegistryApplicationBootstrap mirrors the SDK type of the same name.
type RegistryApplicationBootstrap struct {
	Keep []string `json:"keep" yaml:"keep"`
}

// RegistryApplicationVersion mirrors the SDK type of the same name.
type RegistryApplicationVersion struct {
	BootActivity string                       `json:"boot_activity" yaml:"boot_activity"`
	Features     []string                     `json:"features" yaml:"features"`
	Hooks        RegistryApplicationHooks     `json:"hooks" yaml:"hooks"`
	Bootstrap    RegistryApplicationBootstrap `json:"bootstrap" yaml:"bootstrap"`
	VideoEncoder string                       `json:"video_encoder" yaml:"video_encoder"`
}

// RegistryApplication mirrors the SDK type of the same name: what AMS makes of each
// application the registry lists.
type RegistryApplication struct {
	Name          string                              `json:"name" yaml:"name"`
	Architectures []string                            `json:"architectures" yaml:"architectures"`
	BootPackage   string                              `json:"boot_package" yaml:"boot_package"`
	InstanceType  string                              `json:"instance_type" yaml:"instance_type"`
	Tags          []string                            `json:"tags" yaml:"tags"`
	Versions      map[int]*RegistryApplicationVersion `json:"versions" yaml:"versions"`
	VM            bool                                `json:"vm" yaml:"vm"`
}

// ResponseType mirrors pkg/ams/shared/rest/api of the SDK.
type ResponseType string

// The envelope types the SDK's REST client tells apart.
const (
	ResponseTypeSync  ResponseType = "sync"
	ResponseTypeAsync ResponseType = "async"
	ResponseTypeError ResponseType = "error"
)

// Response mirrors the envelope of pkg/ams/shared/rest/api: the metadata stays raw until
// the caller names the type it expects, as the SDK's QueryStruct does.
type Response struct {
	Type ResponseType `json:"type" yaml:"type"`

	TotalSize *int `json:"total_size,omitempty" yaml:"total_size,omitempty"`

	Status     string `json:"status" yaml:"status"`
	StatusCode int    `json:"status_code" yaml:"status_code"`

	Operation string `json:"operation,omitempty" yaml:"operation,omitempty"`

	Code  int    `json:"error_code" yaml:"error_code"`
	Error string `json:"error,omitempty" yaml:"error,omitempty"`

	Metadata json.RawMessage `json:"metadata,omitempty" yaml:"metadata,omitempty"`
}

// MetadataAsStruct decodes the metadata exactly as the SDK does, through a pointer to an
// interface holding the caller's pointer.
func (r *Response) MetadataAsStruct(target interface{}) error {
	return json.Unmarshal(r.Metadata, &target)
}
