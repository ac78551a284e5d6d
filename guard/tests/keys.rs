//! Key sources against real peers: AWS KMS (moto), a Vault-API server (OpenBao) with its
//! agent rendering the key file, a local server speaking Google Secret Manager's REST
//! API, and rotation while the guard runs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use common::Guard;
use common::peers::{AWS_ENV, Bao, Moto};
use serde_json::{Value, json};

async fn send(guard: &Guard, user: &str) -> Value {
    reqwest::Client::new()
        .post(guard.url("/v1/inspect"))
        .json(&json!({"user_id": user, "prompt": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs `godel-guard audit decrypt ARGS` over the given audit lines.
fn decrypt(lines: &[Value], args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut tool = Command::new(common::BIN)
        .args(["audit", "decrypt"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::io::Write::write_all(&mut tool.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = tool.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn key_id(line: &Value) -> String {
    line["audit_id"].as_str().unwrap().split('.').nth(1).unwrap().to_owned()
}

fn salt_file(dir: &Path) -> std::path::PathBuf {
    common::write_key(dir, "salt", 0x5a)
}

fn start_fails(config: &str, env: &[(&str, &str)]) -> String {
    let dir = common::temp_dir("fail");
    let path = dir.join("c.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::BIN)
        .args(["--listen", "127.0.0.1:0", "--production", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the guard must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn kms_data_key_round_trip_and_refusals() {
    let moto = Moto::start();
    let kms = moto.kms().await;
    let key_id = kms.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let dir = common::temp_dir("kms");

    // The key holder's CLI generates the data key; only its ciphertext is stored.
    let out = Command::new(common::BIN)
        .args(["audit", "new-data-key", "--kms-key-id", &key_id, "--kms-endpoint", &moto.url])
        .envs(AWS_ENV)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blob_b64 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let blob_file = dir.join("godel-key.ciphertext");
    std::fs::write(&blob_file, format!("{blob_b64}\n")).unwrap();

    let config = format!(
        "audit:\n  key: {{kms: {{ciphertextFile: {}, keyId: {key_id}, endpoint: \"{}\"}}}}\n  salt: {{file: {{path: {}}}}}\n",
        blob_file.display(),
        moto.url,
        salt_file(&dir).display()
    );
    let guard = Guard::start_with_env(&config, &["--production"], &AWS_ENV);
    for user in ["patient-1", "patient-2"] {
        assert_eq!(send(&guard, user).await["decision"], "allow");
    }
    let lines = guard.wait_audit(2);

    // With the plaintext data key, as a key holder who asked KMS would have it.
    let blob = base64::engine::general_purpose::STANDARD.decode(&blob_b64).unwrap();
    let plain = kms.decrypt().ciphertext_blob(Blob::new(blob)).send().await.unwrap().plaintext.unwrap();
    let key_file = dir.join("plain.key");
    std::fs::write(&key_file, common::hex_of(plain.as_ref())).unwrap();
    let opened = decrypt(&lines, &["--key-file", key_file.to_str().unwrap()], &[]);
    assert_eq!(opened[0]["user_id"], "patient-1");
    assert_eq!(opened[1]["user_id"], "patient-2");
    // Or straight from the ciphertext file through KMS.
    let via_kms =
        decrypt(&lines, &["--kms-ciphertext-file", blob_file.to_str().unwrap(), "--kms-endpoint", &moto.url], &AWS_ENV);
    assert_eq!(via_kms[1]["user_id"], "patient-2");

    // KMS refuses: the data key belongs to another KMS key than the policy names.
    let other = kms.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let wrong = config.replace(&key_id, &other);
    let err = start_fails(&wrong, &AWS_ENV);
    assert!(err.contains("audit.key: AWS KMS: Decrypt failed"), "{err}");
    // KMS unreachable.
    let port = common::redis::free_port();
    let unreachable = config.replace(&moto.url, &format!("http://127.0.0.1:{port}"));
    let err = start_fails(&unreachable, &AWS_ENV);
    assert!(err.contains("AWS KMS") && err.contains("Decrypt failed"), "{err}");
}

#[tokio::test]
async fn kms_credentials_through_irsa_web_identity() {
    let moto = Moto::start();
    let kms = moto.kms().await;
    let key_id = kms.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let data_key = kms.generate_data_key().key_id(&key_id).key_spec(aws_sdk_kms::types::DataKeySpec::Aes256);
    let blob = data_key.send().await.unwrap().ciphertext_blob.unwrap();
    let dir = common::temp_dir("irsa");
    let blob_file = dir.join("ciphertext");
    std::fs::write(&blob_file, base64::engine::general_purpose::STANDARD.encode(blob.as_ref())).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    let config = format!(
        "audit:\n  key: {{kms: {{ciphertextFile: {}, region: us-east-1}}}}\n  salt: {{file: {{path: {}}}}}\n",
        blob_file.display(),
        salt_file(&dir).display()
    );
    // No static credentials: only what EKS injects for IRSA, pointed at moto.
    let guard = Guard::start_with_env(
        &config,
        &["--production"],
        &[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/godel-guard"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", &moto.url),
            ("AWS_ENDPOINT_URL_KMS", &moto.url),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    );
    assert_eq!(send(&guard, "irsa-user").await["decision"], "allow");
    assert!(guard.stderr.lock().unwrap().iter().any(|l| l.contains("decrypted with AWS KMS")));
}

#[tokio::test]
async fn vault_agent_rendered_key_rotates_into_the_running_guard() {
    let dir = common::temp_dir("bao");
    let mut bao = Bao::start(&dir);
    let (k1, k2) = (common::hex_of(&[0x11; 32]), common::hex_of(&[0x22; 32]));
    bao.put("secret/godel", "key", &k1);
    let rendered = dir.join("godel-key");
    bao.render("godel", "key", &rendered);
    let config = format!(
        "audit:\n  key: {{file: {{path: {}}}}}\n  salt: {{file: {{path: {}}}}}\n  reloadSeconds: 1\n",
        rendered.display(),
        salt_file(&dir).display()
    );
    let guard = Guard::start(&config, &["--production"]);
    send(&guard, "before-rotation").await;
    let first = guard.wait_audit(1)[0].clone();

    // Rotation in Vault reaches the running guard through the agent's file.
    bao.put("secret/godel", "key", &k2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 1;
    let rotated = loop {
        send(&guard, "after-rotation").await;
        n += 1;
        let last = guard.wait_audit(n).last().unwrap().clone();
        if key_id(&last) != key_id(&first) {
            break last;
        }
        assert!(Instant::now() < deadline, "the rotated key never reached the guard");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(guard.stderr.lock().unwrap().iter().any(|l| l.contains("audit key rotated")));
    // The key holder keeps both keys and opens lines from before and after.
    let ring = dir.join("keyring");
    std::fs::write(&ring, format!("{k2}\n{k1}\n")).unwrap();
    let opened = decrypt(&[first, rotated], &["--key-file", ring.to_str().unwrap()], &[]);
    assert_eq!(opened[0]["user_id"], "before-rotation");
    assert_eq!(opened[1]["user_id"], "after-rotation");
}

#[tokio::test]
async fn keyring_file_rotation_and_clear_errors() {
    let dir = common::temp_dir("rotate");
    let key_path = dir.join("key");
    let (k1, k2) = (common::hex_of(&[1; 32]), common::hex_of(&[2; 32]));
    std::fs::write(&key_path, &k1).unwrap();
    let config = format!(
        "audit:\n  key: {{file: {{path: {}}}}}\n  salt: {{file: {{path: {}}}}}\n  reloadSeconds: 1\n",
        key_path.display(),
        salt_file(&dir).display()
    );
    let guard = Guard::start(&config, &[]);
    send(&guard, "u-old").await;
    std::fs::write(&key_path, format!("{k2}\n{k1}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    send(&guard, "u-new").await;
    let lines = guard.wait_audit(2);
    assert_ne!(key_id(&lines[0]), key_id(&lines[1]), "new lines use the new primary key");

    let k1_file = dir.join("k1");
    std::fs::write(&k1_file, &k1).unwrap();
    let only_old = decrypt(&lines, &["--key-file", k1_file.to_str().unwrap()], &[]);
    assert_eq!(only_old[0]["user_id"], "u-old");
    let err = only_old[1]["audit_error"].as_str().unwrap();
    assert!(err.contains("not in the keyring"), "{err}");
    let mut tampered = lines[0].clone();
    let id = tampered["audit_id"].as_str().unwrap().to_owned();
    let (prefix, payload) = id.rsplit_once('.').unwrap();
    let flipped: String = payload.chars().rev().collect();
    tampered["audit_id"] = json!(format!("{prefix}.{flipped}"));
    let bad = decrypt(&[tampered], &["--key-file", key_path.to_str().unwrap()], &[]);
    let err = bad[0]["audit_error"].as_str().unwrap();
    assert!(err.contains("tampered") || err.contains("not an audit id"), "{err}");

    // A key file that turns bad mid-run keeps the current keys.
    std::fs::write(&key_path, "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    send(&guard, "u-after-bad").await;
    let lines = guard.wait_audit(3);
    assert_eq!(key_id(&lines[2]), key_id(&lines[1]));
    assert!(guard.stderr.lock().unwrap().iter().any(|l| l.contains("keeping the current keys")));
    assert!(!guard.stderr.lock().unwrap().iter().any(|l| l.contains(&k2)), "keys never logged");
}

// Multi-threaded: the fake Secret Manager must answer while the test thread waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_secret_manager_with_workload_identity_token() {
    let key = common::hex_of(&[0x33; 32]);
    let payload = base64::engine::general_purpose::STANDARD.encode(&key);
    let app = axum::Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(|headers: HeaderMap| async move {
                if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                    return Err(StatusCode::FORBIDDEN);
                }
                Ok(Json(json!({"access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"})))
            }),
        )
        .route(
            "/v1/projects/demo/secrets/{*secret}",
            get(move |headers: HeaderMap, axum::extract::Path(secret): axum::extract::Path<String>| {
                let payload = payload.clone();
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer ya29.test-token") {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    if secret != "godel-key/versions/latest:access" {
                        return Err(StatusCode::FORBIDDEN);
                    }
                    Ok(Json(
                        json!({"name": "projects/demo/secrets/godel-key/versions/3", "payload": {"data": payload}}),
                    ))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = common::temp_dir("gcp");
    let config = format!(
        "audit:\n  key: {{gcp: {{secretVersion: projects/demo/secrets/godel-key/versions/latest, endpoint: \"{url}\", metadataEndpoint: \"{url}\"}}}}\n  salt: {{file: {{path: {}}}}}\n",
        salt_file(&dir).display()
    );
    let guard = Guard::start(&config, &["--production"]);
    send(&guard, "gke-user").await;
    let key_file = dir.join("key");
    std::fs::write(&key_file, &key).unwrap();
    let opened = decrypt(&guard.wait_audit(1), &["--key-file", key_file.to_str().unwrap()], &[]);
    assert_eq!(opened[0]["user_id"], "gke-user");

    let denied = config.replace("godel-key/versions/latest", "other/versions/latest");
    let err = start_fails(&denied, &[]);
    assert!(err.contains("Google Secret Manager") && err.contains("403"), "{err}");
}

#[test]
fn salt_equal_to_the_key_is_refused() {
    let dir = common::temp_dir("same");
    let key = common::write_key(&dir, "key", 9);
    let config = format!("audit:\n  key: {{file: {{path: {0}}}}}\n  salt: {{file: {{path: {0}}}}}\n", key.display());
    let err = start_fails(&config, &[]);
    assert!(err.contains("audit.salt must be a different secret"), "{err}");
}
