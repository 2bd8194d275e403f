package amscontract

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// amsClient speaks to the registry the way AMS's REST client does.
type amsClient struct {
	t    *testing.T
	http *http.Client
	base string
}

// on is the same client failing t: a subtest must not fail its parent's T.
func (c *amsClient) on(t *testing.T) *amsClient {
	return &amsClient{t: t, http: c.http, base: c.base}
}

// answer is one enveloped response, decoded as the SDK's parseResponse does.
type answer struct {
	status   int
	header   http.Header
	envelope Response
}

// call sends a request and reads the envelope like the SDK's parseResponse: a body that
// is not an envelope is a failure AMS would report. Error envelopes are returned, for the
// caller to tell an expected error from a failure.
func (c *amsClient) call(method, path string, header http.Header, body []byte) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("%s %s: expected a request, got: %v", method, path, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: expected an answer, got: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		c.t.Fatalf("%s %s: expected TLS 1.3 as AMS negotiates it, got connection state %+v", method, path, resp.TLS)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: expected the whole body, got: %v", method, path, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&a.envelope); err != nil {
		c.t.Fatalf("%s %s: expected an AMS envelope, got %d with %q: %v", method, path, resp.StatusCode, raw, err)
	}
	return a
}

// queryStruct is the SDK's QueryStruct plus what AMS takes for granted: a sync envelope
// with status Success and the HTTP status repeated in status_code. It returns the ETag
// and the raw metadata, for checks that decoding alone cannot make.
func (c *amsClient) queryStruct(method, path string, header http.Header, body []byte, wantStatus int, target interface{}) (string, json.RawMessage) {
	c.t.Helper()
	a := c.call(method, path, header, body)
	e := a.envelope
	if e.Type == ResponseTypeError {
		c.t.Fatalf("%s %s: expected HTTP %d, got %d with error %q (error_code %d)", method, path, wantStatus, a.status, e.Error, e.Code)
	}
	if a.status != wantStatus || e.Type != ResponseTypeSync || e.Status != "Success" || e.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: expected HTTP %d with {type: sync, status: Success, status_code: %d}, got HTTP %d with {type: %q, status: %q, status_code: %d}",
			method, path, wantStatus, wantStatus, a.status, e.Type, e.Status, e.StatusCode)
	}
	if err := e.MetadataAsStruct(target); err != nil {
		c.t.Fatalf("%s %s: AMS cannot decode the metadata into %T: %v\nmetadata: %s", method, path, target, err, e.Metadata)
	}
	return a.header.Get("ETag"), e.Metadata
}

// get is queryStruct for a read, which always answers 200.
func (c *amsClient) get(path string, target interface{}) (string, json.RawMessage) {
	c.t.Helper()
	return c.queryStruct(http.MethodGet, path, nil, nil, http.StatusOK, target)
}

// expectNotModified checks that a poller that kept the ETag pays only a 304.
func (c *amsClient) expectNotModified(path, etag string) {
	c.t.Helper()
	if etag == "" || strings.HasPrefix(etag, "W/") {
		c.t.Errorf("GET %s: expected a strong ETag, got %q", path, etag)
		return
	}
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatalf("GET %s: expected a request, got: %v", path, err)
	}
	req.Header.Set("If-None-Match", etag)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s with If-None-Match: expected an answer, got: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		c.t.Errorf("GET %s with If-None-Match: %s: expected 304 with no body, got %d with %q", path, etag, resp.StatusCode, body)
	}
}

// uploadStatus is the metadata of POST and PATCH /1.0/uploads.
type uploadStatus struct {
	ID       string `json:"id"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Offset   int64  `json:"offset"`
	Complete bool   `json:"complete"`
}

// upload stores data as a blob and returns its digest, through the resumable upload
// (declare digest and size, then send the bytes from offset 0).
func (c *amsClient) upload(data []byte) string {
	c.t.Helper()
	digest := digestOf(data)
	header := http.Header{}
	header.Set("X-AAR-Digest", digest)
	header.Set("X-AAR-Size", strconv.Itoa(len(data)))
	var created uploadStatus
	a := c.call(http.MethodPost, "/1.0/uploads", header, nil)
	if a.status != http.StatusCreated {
		c.t.Fatalf("POST /1.0/uploads for %s: expected 201 (a new blob), got %d (error %q)", digest, a.status, a.envelope.Error)
	}
	if err := a.envelope.MetadataAsStruct(&created); err != nil {
		c.t.Fatalf("POST /1.0/uploads: expected upload status metadata, got %s: %v", a.envelope.Metadata, err)
	}
	location := a.header.Get("Location")
	if want := "/1.0/uploads/" + created.ID; created.ID == "" || location != want {
		c.t.Fatalf("POST /1.0/uploads: expected an id and Location %s, got id %q and Location %q", want, created.ID, location)
	}
	patch := http.Header{}
	patch.Set("Upload-Offset", "0")
	patch.Set("Content-Type", "application/octet-stream")
	var done uploadStatus
	c.queryStruct(http.MethodPatch, location, patch, data, http.StatusOK, &done)
	if !done.Complete || done.Digest != digest || done.Size != int64(len(data)) || done.Offset != int64(len(data)) {
		c.t.Fatalf("PATCH %s: expected a complete upload of %s, %d bytes, got %+v", location, digest, len(data), done)
	}
	return digest
}

// publishRequest is the body of POST /1.0/applications/{name}/versions.
type publishRequest struct {
	Version  int               `json:"version"`
	Manifest string            `json:"manifest"`
	Images   map[string]string `json:"images"`
	VM       *bool             `json:"vm,omitempty"`
}

func (c *amsClient) publish(name string, req publishRequest) {
	c.t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		c.t.Fatalf("expected a JSON publish request, got: %v", err)
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	var created versionObject
	c.queryStruct(http.MethodPost, "/1.0/applications/"+name+"/versions", header, body, http.StatusCreated, &created)
	if created.Application != name || created.Version != req.Version {
		c.t.Fatalf("publishing %s version %d: expected that version back, got %s version %d", name, req.Version, created.Application, created.Version)
	}
}

// download fetches an image as AMS does (plain GET, not enveloped) and returns the
// SHA-256 of what arrived, hashed while streaming.
func (c *amsClient) download(path string) (status int, header http.Header, digest string, size int64) {
	c.t.Helper()
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		c.t.Fatalf("GET %s: expected the image, got: %v", path, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: expected the whole image, got %d bytes then: %v", path, n, err)
	}
	return resp.StatusCode, resp.Header, "sha256:" + hex.EncodeToString(h.Sum(nil)), n
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// versionObject is GET /1.0/applications/{name}/versions/{n}: the registry's record with
// AMS's per-version fields at its top level, so the same answer reads as a
// RegistryApplicationVersion.
type versionObject struct {
	RegistryApplicationVersion
	Application   string              `json:"application"`
	Version       int                 `json:"version"`
	Manifest      string              `json:"manifest"`
	Tags          []string            `json:"tags"`
	InstanceType  string              `json:"instance_type"`
	BootPackage   string              `json:"boot_package"`
	Architectures []string            `json:"architectures"`
	Images        map[string]imageRef `json:"images"`
	CreatedAt     string              `json:"created_at"`
	VM            bool                `json:"vm"`
}

type imageRef struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// registryExtras are the registry's own fields beside RegistryApplication's.
type registryExtras struct {
	LatestVersion int    `json:"latest_version"`
	UpdatedAt     string `json:"updated_at"`
	Versions      map[int]struct {
		Images      map[string]imageRef `json:"images"`
		PublishedAt string              `json:"published_at"`
	} `json:"versions"`
}

// missingFields lists the fields of typ that raw lacks or sets to null. Decoding cannot
// tell: Go leaves an absent field at its zero value and reads null as a nil slice, so
// AMS would import an application whose lists are nil without any error.
func missingFields(where string, raw json.RawMessage, typ reflect.Type) []string {
	for typ.Kind() == reflect.Ptr {
		typ = typ.Elem()
	}
	var problems []string
	switch typ.Kind() {
	case reflect.Struct:
		var object map[string]json.RawMessage
		if err := json.Unmarshal(raw, &object); err != nil || object == nil {
			return []string{fmt.Sprintf("%s: expected a JSON object, got %s", where, raw)}
		}
		for i := 0; i < typ.NumField(); i++ {
			field := typ.Field(i)
			tag := strings.Split(field.Tag.Get("json"), ",")[0]
			if field.Anonymous && tag == "" {
				problems = append(problems, missingFields(where, raw, field.Type)...)
				continue
			}
			if tag == "" || tag == "-" {
				continue
			}
			value, ok := object[tag]
			path := where + "." + tag
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: expected a %s, got no such key", path, field.Type))
			case string(value) == "null":
				problems = append(problems, fmt.Sprintf("%s: expected a %s, got null", path, field.Type))
			default:
				problems = append(problems, missingFields(path, value, field.Type)...)
			}
		}
	case reflect.Map:
		var object map[string]json.RawMessage
		if err := json.Unmarshal(raw, &object); err != nil {
			return []string{fmt.Sprintf("%s: expected a JSON object, got %s", where, raw)}
		}
		keys := make([]string, 0, len(object))
		for k := range object {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			problems = append(problems, missingFields(where+"["+k+"]", object[k], typ.Elem())...)
		}
	case reflect.Slice:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return []string{fmt.Sprintf("%s: expected a JSON array, got %s", where, raw)}
		}
		for i, item := range items {
			problems = append(problems, missingFields(fmt.Sprintf("%s[%d]", where, i), item, typ.Elem())...)
		}
	}
	return problems
}

func requireAllFields(t *testing.T, where string, raw json.RawMessage, target interface{}) {
	t.Helper()
	for _, problem := range missingFields(where, raw, reflect.TypeOf(target)) {
		t.Error(problem)
	}
}

// same reports a field whose value differs; %#v shows a nil list apart from an empty one.
func same(t *testing.T, where string, want, got interface{}) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Errorf("%s: expected %#v, got %#v", where, want, got)
	}
}

func sorted(list []string) []string {
	if list == nil {
		return nil
	}
	out := append([]string{}, list...)
	sort.Strings(out)
	return out
}
