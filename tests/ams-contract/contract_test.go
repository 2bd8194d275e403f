package amscontract

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"
)

const manifestCandy1 = `name: candy
version: "1.0"
instance-type: a4.3
required-permissions:
  - android.permission.WRITE_EXTERNAL_STORAGE
  - android.permission.READ_EXTERNAL_STORAGE
image: default
addons: [ssh]
tags: [game, kids]
boot-package: com.canonical.candy
boot-activity: com.canonical.candy.GameApp
video-encoder: gpu-preferred
features: [enable_virtual_keyboard, allow_custom_android_id]
hooks:
  timeout: 10m
bootstrap:
  keep: [app.apk, data/]
watchdog:
  disabled: false
  allowed-packages:
    - com.android.settings
services:
  - name: adb
    port: 5559
    protocols: [tcp]
    expose: false
resources:
  cpus: 4
  memory: 4GB
  disk-size: 8GB
  gpu-slots: 1
extra-data:
  com.canonical.candy.obb:
    target: /data/app/com.canonical.candy-1/lib
    owner: 1000
    permissions: "0644"
a-key-from-a-newer-ams: {anything: [goes]}
`

// Version 2 differs from version 1 in every field AMS reads, so that a registry that
// answered one version's values for the other cannot pass.
const manifestCandy2 = `name: candy
version: "2.0"
instance-type: g4.5
tags: [game, arcade]
boot-package: com.canonical.candy.arcade
boot-activity: com.canonical.candy.arcade.Main
video-encoder: software
features: [enable_anbox_ime]
hooks:
  timeout: 5m
bootstrap:
  keep: [data/saves/]
watchdog:
  disabled: true
services:
  - name: web
    port: 8080
    port-max: 8090
    protocols: [tcp, udp]
    expose: true
resources:
  cpus: 8
  memory: 8GB
  gpu-slots: 2
  vpu-slots: 1
another-unknown-key: [1, 2, 3]
`

const manifestPlain = "name: plain\n"

// published is what the test sent for one version, and so what AMS must read back.
type published struct {
	app      string
	number   int
	manifest string
	vm       bool
	images   map[string][]byte
	digests  map[string]string
	tags     []string
	instance string
	boot     string
	settings RegistryApplicationVersion
}

func TestRegistryAsAMSReadsIt(t *testing.T) {
	bin := aarBinary(t)
	dir := t.TempDir()
	id := newClientIdentity(t, dir)
	d := startDaemon(t, bin, id, dir)

	// The fingerprint AMS is configured with comes from the operator (the ready line or
	// the certificate file), never from the connection it is meant to authenticate.
	if fileFP := d.serverCertificateFingerprint(t); fileFP != d.fingerprint {
		t.Fatalf("expected the ready line's server fingerprint %s to be the SHA-256 of certs/server.crt, got %s from the file", d.fingerprint, fileFP)
	}
	base := "https://" + d.addr
	c := &amsClient{t: t, http: amsHTTPClient(id, d.fingerprint), base: base}

	t.Run("pin", func(t *testing.T) {
		c := c.on(t)
		wrong := fmt.Sprintf("%064x", 0)
		other := amsHTTPClient(id, wrong)
		resp, err := other.Get(base + "/1.0")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("expected a client pinned to %s to refuse the server, got HTTP %d", wrong, resp.StatusCode)
		}
		var info struct {
			Auth              string `json:"auth"`
			Role              string `json:"role"`
			ServerFingerprint string `json:"server_fingerprint"`
		}
		c.get("/1.0", &info)
		same(t, "GET /1.0: auth, role, server_fingerprint",
			[]string{"trusted", "publisher", d.fingerprint},
			[]string{info.Auth, info.Role, info.ServerFingerprint})
	})
	if t.Failed() {
		return
	}

	versions := []*published{
		{
			app: "candy", number: 1, manifest: manifestCandy1, vm: false,
			images:   map[string][]byte{"amd64": image("candy-1-amd64", 4<<20)},
			tags:     []string{"game", "kids"},
			instance: "a4.3", boot: "com.canonical.candy",
			settings: RegistryApplicationVersion{
				BootActivity: "com.canonical.candy.GameApp",
				Features:     []string{"enable_virtual_keyboard", "allow_custom_android_id"},
				Hooks:        RegistryApplicationHooks{Timeout: "10m"},
				Bootstrap:    RegistryApplicationBootstrap{Keep: []string{"app.apk", "data/"}},
				VideoEncoder: "gpu-preferred",
			},
		},
		{
			app: "candy", number: 2, manifest: manifestCandy2, vm: true,
			images: map[string][]byte{
				"amd64": image("candy-2-amd64", 3<<20),
				"arm64": image("candy-2-arm64", 2<<20+12345),
			},
			tags:     []string{"game", "arcade"},
			instance: "g4.5", boot: "com.canonical.candy.arcade",
			settings: RegistryApplicationVersion{
				BootActivity: "com.canonical.candy.arcade.Main",
				Features:     []string{"enable_anbox_ime"},
				Hooks:        RegistryApplicationHooks{Timeout: "5m"},
				Bootstrap:    RegistryApplicationBootstrap{Keep: []string{"data/saves/"}},
				VideoEncoder: "software",
			},
		},
		{
			// A manifest with nothing but a name: every other field must still reach AMS
			// as its zero value of the right JSON type, lists as [] rather than null.
			app: "plain", number: 1, manifest: manifestPlain, vm: false,
			images:   map[string][]byte{"amd64": image("plain-1-amd64", 1<<20)},
			tags:     []string{},
			settings: RegistryApplicationVersion{Features: []string{}, Bootstrap: RegistryApplicationBootstrap{Keep: []string{}}},
		},
	}

	t.Run("publish", func(t *testing.T) {
		c := c.on(t)
		for _, v := range versions {
			v.digests = map[string]string{}
			for arch, data := range v.images {
				v.digests[arch] = c.upload(data)
			}
			req := publishRequest{Version: v.number, Manifest: v.manifest, Images: v.digests}
			// "plain" leaves vm out, as a publisher that predates the key would.
			if v.app != "plain" {
				vm := v.vm
				req.VM = &vm
			}
			c.publish(v.app, req)
		}
	})
	if t.Failed() {
		return
	}

	candy := application("candy", versions[0], versions[1])
	plain := application("plain", versions[2])

	t.Run("list", func(t *testing.T) {
		c := c.on(t)
		apps := []RegistryApplication{}
		etag, raw := c.get("/1.0/applications", &apps)
		requireAllFields(t, "GET /1.0/applications", raw, apps)
		if len(apps) != 2 {
			t.Fatalf("GET /1.0/applications: expected 2 applications, got %d: %+v", len(apps), apps)
		}
		byName := map[string]RegistryApplication{}
		for _, app := range apps {
			byName[app.Name] = app
		}
		for _, want := range []RegistryApplication{candy, plain} {
			got, ok := byName[want.Name]
			if !ok {
				t.Errorf("GET /1.0/applications: expected %q in the list, got names %v", want.Name, names(apps))
				continue
			}
			checkApplication(t, "GET /1.0/applications ["+want.Name+"]", want, got)
		}
		c.expectNotModified("/1.0/applications", etag)
	})

	t.Run("show", func(t *testing.T) {
		c := c.on(t)
		for _, want := range []RegistryApplication{candy, plain} {
			path := "/1.0/applications/" + want.Name
			var got RegistryApplication
			etag, raw := c.get(path, &got)
			requireAllFields(t, "GET "+path, raw, got)
			checkApplication(t, "GET "+path, want, got)
			c.expectNotModified(path, etag)

			// The registry's own fields sit beside AMS's without disturbing them.
			var extras registryExtras
			c.get(path, &extras)
			latest := 0
			for n := range want.Versions {
				if n > latest {
					latest = n
				}
			}
			same(t, "GET "+path+": latest_version", latest, extras.LatestVersion)
			if _, err := time.Parse(time.RFC3339, extras.UpdatedAt); err != nil {
				t.Errorf("GET %s: expected updated_at in RFC 3339, got %q: %v", path, extras.UpdatedAt, err)
			}
			for _, v := range versions {
				if v.app != want.Name {
					continue
				}
				entry := extras.Versions[v.number]
				same(t, fmt.Sprintf("GET %s: versions[%d].images", path, v.number), imageRefs(v), entry.Images)
				if _, err := time.Parse(time.RFC3339, entry.PublishedAt); err != nil {
					t.Errorf("GET %s: expected versions[%d].published_at in RFC 3339, got %q: %v", path, v.number, entry.PublishedAt, err)
				}
			}
		}
		// AMS shows the error text of an error envelope, so a missing application must
		// answer one rather than a bare status.
		missing := "/1.0/applications/nothing-here"
		a := c.call(http.MethodGet, missing, nil, nil)
		e := a.envelope
		if a.status != http.StatusNotFound || e.Type != ResponseTypeError || e.Code != http.StatusNotFound || e.Error == "" {
			t.Errorf("GET %s: expected 404 with {type: error, error_code: 404, error: <text>}, got %d with {type: %q, error_code: %d, error: %q}",
				missing, a.status, e.Type, e.Code, e.Error)
		}
	})

	t.Run("version", func(t *testing.T) {
		c := c.on(t)
		for _, v := range versions {
			path := fmt.Sprintf("/1.0/applications/%s/versions/%d", v.app, v.number)
			var got versionObject
			etag, raw := c.get(path, &got)
			requireAllFields(t, "GET "+path, raw, got)
			same(t, "GET "+path+": application", v.app, got.Application)
			same(t, "GET "+path+": version", v.number, got.Version)
			same(t, "GET "+path+": manifest (verbatim)", v.manifest, got.Manifest)
			same(t, "GET "+path+": tags", v.tags, got.Tags)
			same(t, "GET "+path+": instance_type", v.instance, got.InstanceType)
			same(t, "GET "+path+": boot_package", v.boot, got.BootPackage)
			same(t, "GET "+path+": architectures", architectures(v), sorted(got.Architectures))
			same(t, "GET "+path+": images", imageRefs(v), got.Images)
			same(t, "GET "+path+": vm", v.vm, got.VM)
			checkVersion(t, "GET "+path, v.settings, &got.RegistryApplicationVersion)
			if _, err := time.Parse(time.RFC3339, got.CreatedAt); err != nil {
				t.Errorf("GET %s: expected created_at in RFC 3339, got %q: %v", path, got.CreatedAt, err)
			}
			c.expectNotModified(path, etag)
		}
	})

	t.Run("tags", func(t *testing.T) {
		c := c.on(t)
		// The application's tags are those of its latest version, so "kids" (version 1
		// only) no longer finds candy.
		for filter, want := range map[string][]string{
			"game":        {"candy"},
			"arcade,game": {"candy"},
			"game,,":      {"candy"},
			"kids":        {},
			"game,nope":   {},
			"":            {"candy", "plain"},
		} {
			path := "/1.0/applications?tags=" + filter
			apps := []RegistryApplication{}
			_, raw := c.get(path, &apps)
			if apps == nil {
				t.Errorf("GET %s: expected a JSON list, got %s (AMS reads null as a nil list)", path, raw)
				continue
			}
			same(t, "GET "+path+": names", want, names(apps))
		}
	})

	t.Run("download", func(t *testing.T) {
		c := c.on(t)
		for _, v := range versions {
			for _, arch := range architectures(v) {
				path := fmt.Sprintf("/1.0/applications/%s/versions/%d/images/%s", v.app, v.number, arch)
				status, header, digest, size := c.download(path)
				want := v.digests[arch]
				if status != http.StatusOK {
					t.Errorf("GET %s: expected 200 with the image, got %d", path, status)
					continue
				}
				same(t, "GET "+path+": SHA-256 of the bytes", want, digest)
				same(t, "GET "+path+": size", int64(len(v.images[arch])), size)
				same(t, "GET "+path+": Content-Length", strconv.Itoa(len(v.images[arch])), header.Get("Content-Length"))
				same(t, "GET "+path+": X-AAR-Digest", want, header.Get("X-AAR-Digest"))
			}
		}
	})
}

// application is the RegistryApplication AMS must read for these versions: its own fields
// describe the latest version, the one AMS installs; versions keeps each one's settings.
func application(name string, versions ...*published) RegistryApplication {
	latest := versions[len(versions)-1]
	app := RegistryApplication{
		Name:          name,
		Architectures: architectures(latest),
		BootPackage:   latest.boot,
		InstanceType:  latest.instance,
		Tags:          latest.tags,
		Versions:      map[int]*RegistryApplicationVersion{},
		VM:            latest.vm,
	}
	for _, v := range versions {
		settings := v.settings
		app.Versions[v.number] = &settings
	}
	return app
}

func checkApplication(t *testing.T, where string, want, got RegistryApplication) {
	t.Helper()
	same(t, where+": name", want.Name, got.Name)
	same(t, where+": architectures", want.Architectures, sorted(got.Architectures))
	same(t, where+": boot_package", want.BootPackage, got.BootPackage)
	same(t, where+": instance_type", want.InstanceType, got.InstanceType)
	same(t, where+": tags", want.Tags, got.Tags)
	same(t, where+": vm", want.VM, got.VM)
	same(t, where+": versions keys", versionNumbers(want.Versions), versionNumbers(got.Versions))
	for n, wantVersion := range want.Versions {
		if gotVersion := got.Versions[n]; gotVersion != nil {
			checkVersion(t, fmt.Sprintf("%s: versions[%d]", where, n), *wantVersion, gotVersion)
		}
	}
}

func checkVersion(t *testing.T, where string, want RegistryApplicationVersion, got *RegistryApplicationVersion) {
	t.Helper()
	same(t, where+": boot_activity", want.BootActivity, got.BootActivity)
	same(t, where+": features", want.Features, got.Features)
	same(t, where+": hooks.timeout", want.Hooks.Timeout, got.Hooks.Timeout)
	same(t, where+": bootstrap.keep", want.Bootstrap.Keep, got.Bootstrap.Keep)
	same(t, where+": video_encoder", want.VideoEncoder, got.VideoEncoder)
}

func architectures(v *published) []string {
	out := []string{}
	for arch := range v.images {
		out = append(out, arch)
	}
	sort.Strings(out)
	return out
}

func imageRefs(v *published) map[string]imageRef {
	out := map[string]imageRef{}
	for arch, data := range v.images {
		out[arch] = imageRef{Digest: v.digests[arch], Size: int64(len(data))}
	}
	return out
}

func versionNumbers(versions map[int]*RegistryApplicationVersion) []int {
	out := []int{}
	for n := range versions {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

func names(apps []RegistryApplication) []string {
	out := []string{}
	for _, app := range apps {
		out = append(out, app.Name)
	}
	sort.Strings(out)
	return out
}
