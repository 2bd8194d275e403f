//! The registry's API as the tests call it: uploads, publishing, and the shapes of what
//! comes back.

use std::path::Path;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    digest_of, empty_body, file_digest, full_body, pattern_digest, Body, Client, FileBody,
    PatternBody, Resp,
};

impl Client {
    /// `POST /1.0/uploads` for `digest`/`size`.
    pub async fn create_upload(&self, digest: &str, size: u64) -> Resp {
        self.req_with(
            Method::POST,
            "/1.0/uploads",
            &[("x-aar-digest", digest), ("x-aar-size", &size.to_string())],
            empty_body(),
        )
        .await
    }

    /// `PATCH /1.0/uploads/{id}` at `offset` with `body` of `len` bytes.
    pub async fn patch_upload(&self, id: &str, offset: u64, len: u64, body: Body) -> Resp {
        self.req_with(
            Method::PATCH,
            &format!("/1.0/uploads/{id}"),
            &[
                ("upload-offset", &offset.to_string()),
                ("content-length", &len.to_string()),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
        .await
    }

    /// Uploads `data` in one PATCH; returns its digest. Panics unless the upload completes.
    pub async fn upload(&self, data: &[u8]) -> String {
        let digest = digest_of(data);
        let r = self.create_upload(&digest, data.len() as u64).await;
        match r.status.as_u16() {
            200 => {
                assert_eq!(r.metadata()["complete"], true, "{}", r.text());
            }
            201 => {
                let id = upload_id(&r);
                let p = self
                    .patch_upload(&id, 0, data.len() as u64, full_body(data.to_vec()))
                    .await;
                p.expect(200);
                assert_eq!(p.metadata()["complete"], true, "{}", p.text());
            }
            _ => panic!("POST /1.0/uploads: {} {}", r.status, r.text()),
        }
        digest
    }

    /// Uploads `data` in PATCHes of `piece` bytes, checking the offset after each; returns
    /// the digest. Pieces that do not line up with the backend's parts are the point.
    pub async fn upload_in_pieces(&self, data: &[u8], piece: usize) -> String {
        let digest = digest_of(data);
        let created = self.create_upload(&digest, data.len() as u64).await;
        let meta = created.metadata();
        if meta["complete"] == true {
            return digest;
        }
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let id = upload_id(&created);
        let mut offset = 0;
        let mut last = None;
        for part in data.chunks(piece.max(1)) {
            let len = part.len() as u64;
            let r = self
                .patch_upload(&id, offset, len, full_body(part.to_vec()))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            offset += len;
            assert_eq!(r.metadata()["offset"], offset);
            last = Some(r);
        }
        assert_eq!(last.expect("a piece").metadata()["complete"], true);
        digest
    }

    /// Uploads `size` bytes of pattern `seed`, streamed; returns the digest.
    pub async fn upload_pattern(&self, seed: u64, size: u64) -> String {
        let digest = pattern_digest(seed, size);
        let r = self.create_upload(&digest, size).await;
        if r.status == StatusCode::OK {
            return digest;
        }
        r.expect(201);
        let id = upload_id(&r);
        let p = self
            .patch_upload(&id, 0, size, PatternBody::new(seed, 0, size).boxed())
            .await;
        p.expect(200);
        assert_eq!(p.metadata()["complete"], true, "{}", p.text());
        digest
    }

    /// Uploads a file, streamed; returns the digest. Panics unless the upload completes.
    pub async fn upload_file(&self, path: &Path) -> String {
        let (digest, size) = file_digest(path);
        let r = self.create_upload(&digest, size).await;
        if r.status == StatusCode::OK {
            return digest;
        }
        r.expect(201);
        let id = upload_id(&r);
        let body = FileBody::open(path).unwrap().boxed();
        let p = self.patch_upload(&id, 0, size, body).await;
        p.expect(200);
        assert_eq!(p.metadata()["complete"], true, "{}", p.text());
        digest
    }

    /// `POST /1.0/applications/{name}/versions`.
    pub async fn publish(
        &self,
        name: &str,
        version: Option<u64>,
        manifest: &str,
        images: &[(&str, &str)],
    ) -> Resp {
        let mut imgs = serde_json::Map::new();
        for (arch, digest) in images {
            imgs.insert(arch.to_string(), json!(digest));
        }
        let mut body = json!({"manifest": manifest, "images": imgs});
        if let Some(v) = version {
            body["version"] = json!(v);
        }
        self.req_with(
            Method::POST,
            &format!("/1.0/applications/{name}/versions"),
            &[("content-type", "application/json")],
            full_body(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Uploads one small distinct image per architecture and publishes them; returns the
    /// version object (metadata) and the digests.
    pub async fn publish_simple(
        &self,
        name: &str,
        version: Option<u64>,
        tags: &[&str],
        arches: &[&str],
    ) -> (Value, Vec<(String, Vec<u8>)>) {
        let mut images = Vec::new();
        for arch in arches {
            let data = format!("image of {name} version {version:?} for {arch}\n").repeat(50);
            let d = self.upload(data.as_bytes()).await;
            images.push((arch.to_string(), d, data.into_bytes()));
        }
        let refs: Vec<(&str, &str)> = images
            .iter()
            .map(|(a, d, _)| (a.as_str(), d.as_str()))
            .collect();
        let r = self
            .publish(name, version, &manifest(name, tags), &refs)
            .await;
        r.expect(201);
        (
            r.metadata(),
            images.into_iter().map(|(a, _, b)| (a, b)).collect(),
        )
    }
}

pub fn upload_id(r: &Resp) -> String {
    let m = r.metadata();
    let id = m["id"]
        .as_str()
        .unwrap_or_else(|| panic!("upload without id: {}", r.text()))
        .to_string();
    if let Some(loc) = r.header("location") {
        assert_eq!(loc, format!("/1.0/uploads/{id}"), "Location header");
    }
    id
}

/// The version numbers of an application object, from the keys of its `versions` object
/// (`{"1": {…}, "2": {…}}`, the shape AMS decodes into a `map[int]`), in order.
pub fn version_numbers(app: &Value) -> Vec<u64> {
    let mut numbers: Vec<u64> = app["versions"]
        .as_object()
        .unwrap_or_else(|| panic!("versions is an object keyed by number: {app}"))
        .keys()
        .map(|k| {
            k.parse()
                .unwrap_or_else(|_| panic!("version key {k:?}: {app}"))
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// An AMS-style application manifest.
pub fn manifest(name: &str, tags: &[&str]) -> String {
    let mut m = format!(
        "name: {name}\ninstance-type: a2.3\nboot-package: com.example.{}\n",
        name.replace(['-', '_'], ".")
    );
    if !tags.is_empty() {
        m.push_str("tags:\n");
        for t in tags {
            m.push_str(&format!("  - {t}\n"));
        }
    }
    m.push_str("resources:\n  cpus: 2\n  memory: 3GB\nx-custom-key: kept verbatim # comment\n");
    m
}
