package amscontract

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The conformance test relies on missingFields for what decoding lets through silently;
// this keeps that guard honest without a daemon.
func TestMissingFieldsFindsAbsentAndNull(t *testing.T) {
	raw := json.RawMessage(`[{"name":"a","architectures":null,"boot_package":"","instance_type":"",
		"versions":{"1":{"boot_activity":"","features":[],"hooks":{},"bootstrap":{"keep":null},"video_encoder":""}},"vm":false}]`)
	var apps []RegistryApplication
	if err := json.Unmarshal(raw, &apps); err != nil {
		t.Fatalf("expected the sample to decode as AMS decodes it, got: %v", err)
	}
	got := missingFields("list", raw, reflect.TypeOf(apps))
	want := []string{
		"list[0].architectures: expected a []string, got null",
		"list[0].tags: expected a []string, got no such key",
		"list[0].versions[1].hooks.timeout: expected a string, got no such key",
		"list[0].versions[1].bootstrap.keep: expected a []string, got null",
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("expected %q, got %q", want, got)
	}
}
