use super::*;

const FULL: &str = r#"name: candy
version: "1.2.3"
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
"#;

#[test]
fn every_key_of_the_reference_is_read() {
    let m = parse(FULL).unwrap();
    assert_eq!(&*m.name, "candy");
    assert_eq!(m.version.as_deref(), Some("1.2.3"));
    assert_eq!(m.instance_type().as_deref(), Some("a4.3"));
    assert_eq!(m.required_permissions.as_ref().unwrap().len(), 2);
    assert_eq!(m.image.as_deref(), Some("default"));
    assert_eq!(m.addons.as_ref().unwrap()[0].to_string(), "ssh");
    assert_eq!(m.tags(), ["game", "kids"]);
    assert_eq!(m.boot_package().as_deref(), Some("com.canonical.candy"));
    assert_eq!(m.boot_activity(), "com.canonical.candy.GameApp");
    assert_eq!(m.video_encoder(), "gpu-preferred");
    assert_eq!(
        m.features(),
        ["enable_virtual_keyboard", "allow_custom_android_id"]
    );
    assert_eq!(m.hooks_timeout(), "10m");
    assert_eq!(m.bootstrap_keep(), ["app.apk", "data/"]);
    let watchdog = m.watchdog.as_ref().unwrap();
    assert_eq!(watchdog.disabled, Some(false));
    assert_eq!(watchdog.allowed_packages.as_ref().unwrap().len(), 1);
    let service = &m.services.as_ref().unwrap()[0];
    assert_eq!(service.port, Some(5559));
    assert_eq!(service.expose, Some(false));
    let resources = m.resources.as_ref().unwrap();
    assert_eq!(resources.cpus, Some(4));
    assert_eq!(resources.disk_size.as_deref(), Some("8GB"));
    let extra = &m.extra_data.as_ref().unwrap()["com.canonical.candy.obb"];
    assert_eq!(
        extra.owner.as_deref(),
        Some("1000"),
        "yaml.v2 reads numbers into strings"
    );
    assert_eq!(extra.permissions.as_deref(), Some("0644"));
}

#[test]
fn absent_keys_read_as_zero_values() {
    let m = parse("name: bare\n").unwrap();
    assert_eq!(m.boot_activity(), "");
    assert!(m.features().is_empty());
    assert_eq!(m.hooks_timeout(), "");
    assert!(m.bootstrap_keep().is_empty());
    assert!(m.tags().is_empty());
    assert_eq!(m.instance_type(), None);
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_wrong_type_names_the_key_its_line_and_what_was_expected() {
    assert_eq!(
        error("name: candy\nhooks:\n  timeout: [10m]\n"),
        "manifest key `hooks.timeout` (line 3, column 12): expected a string, found a sequence"
    );
    assert_eq!(
        error("name: candy\nfeatures: enable_virtual_keyboard\n"),
        "manifest key `features` (line 2, column 11): expected a list, found the string \"enable_virtual_keyboard\""
    );
    assert_eq!(
        error("name: candy\nservices:\n  - name: adb\n    port: high\n"),
        "manifest key `services[0].port` (line 4, column 11): expected a number from 0 to 65535, found the string \"high\""
    );
    assert_eq!(
        error("name: candy\nresources:\n  cpus: -1\n"),
        "manifest key `resources.cpus` (line 3, column 9): expected a whole number from 0 to 4294967295, found -1"
    );
    assert_eq!(
        error("name: candy\nversion: 1.10\n"),
        "manifest key `version` (line 2, column 10): expected a string, found the number 1.1; quote it (\"…\") so that its digits are kept as written"
    );
    assert_eq!(
        error("name: candy\nwatchdog:\n  disabled: maybe\n"),
        "manifest key `watchdog.disabled` (line 3, column 13): expected true or false, found the string \"maybe\""
    );
}

#[test]
fn name_version_and_tags_follow_the_rules() {
    assert_eq!(
        error("tags: [a]\n"),
        "manifest key `name` (line 1, column 1): is missing; a manifest names its application (`name: <application>`)"
    );
    assert_eq!(
        error(&format!("name: candy\nversion: {}\n", "v".repeat(51))),
        "manifest key `version`: is 51 characters long; the Anbox limit is 50"
    );
    assert!(parse(&format!("name: candy\nversion: {}\n", "v".repeat(50))).is_ok());
    assert!(error("name: candy\ntags: [\"a,b\"]\n").starts_with("manifest key `tags[0]`"));
    assert!(error("name: [unclosed").contains("line 1"));
    assert!(
        error("- a\n- b\n").contains("expected a YAML mapping of manifest keys"),
        "{}",
        error("- a\n- b\n")
    );
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let text = format!(
        "name: x\nextra: {}{}\n",
        "[".repeat(512 * 1024),
        "]".repeat(512 * 1024)
    );
    let start = std::time::Instant::now();
    assert_eq!(
        parse(&text).unwrap_err(),
        ManifestError::TooDeep { line: 2 }
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
}
