//! A production Redis, for real: an ACL user whose password comes from a file and is
//! rotated while the guard runs, and TLS with a CA and client certificates made here with
//! openssl. Every error is checked for the password.

mod common;

use std::path::Path;
use std::process::Command;

use common::redis::{RedisCluster, RedisServer, free_port, redis_cli};
use godel_config::{RedisConfig, RedisMode, RedisTls};
use godel_guard::limiter::{BucketLimit, DebtPolicy, RedisBackend, Usage, UsageLimit};

const DEBT: DebtPolicy = DebtPolicy { half_life_seconds: 600.0, quarantine_threshold: 200.0 };
const LIMIT: BucketLimit = BucketLimit { rate_per_second: 100.0, burst: 100.0 };

fn config(url: String) -> RedisConfig {
    RedisConfig {
        url,
        mode: RedisMode::Standalone,
        nodes: vec![],
        master_name: None,
        timeout_ms: 500,
        lease_ms: 1000,
        username_file: None,
        password_file: None,
        tls: None,
    }
}

/// A command as the test's own administrator, once the default user is off.
fn admin(redis: &RedisServer, args: &[&str]) -> String {
    let mut all = vec!["--user", "admin", "--pass", "admin-pw-3d9f", "--no-auth-warning"];
    all.extend_from_slice(args);
    redis_cli(redis.port, &all)
}

#[tokio::test]
async fn an_acl_user_from_files_and_a_rotated_password_without_a_restart() {
    let redis = RedisServer::start();
    assert_eq!(redis.cli(&["ACL", "SETUSER", "admin", "on", ">admin-pw-3d9f", "~*", "&*", "+@all"]), "OK");
    assert_eq!(admin(&redis, &["ACL", "SETUSER", "default", "off"]), "OK");
    // What the guard needs and no more: its scripts and what they call, on its own keys.
    let grant = ["on", "~godel:rl:*", "+evalsha", "+eval", "+script|load", "+ping"];
    let grant = [&grant[..], &["+hmget", "+hset", "+pexpire", "+pttl", "+time"]].concat();
    let mut setuser = vec!["ACL", "SETUSER", "godel-guard", ">first-pw-81c2"];
    setuser.extend_from_slice(&grant);
    assert_eq!(admin(&redis, &setuser), "OK");

    let dir = common::temp_dir("redis-acl");
    std::fs::write(dir.join("username"), "godel-guard\n").unwrap();
    std::fs::write(dir.join("password"), "first-pw-81c2\n").unwrap();
    let with_files = RedisConfig {
        username_file: Some(dir.join("username").display().to_string()),
        password_file: Some(dir.join("password").display().to_string()),
        ..config(redis.url())
    };
    let backend = RedisBackend::new(&with_files).unwrap();
    backend.connect().await.unwrap();
    assert!(backend.admit("free:acl", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());

    // Without the files, the same URL is refused: the default user is off.
    let anonymous = RedisBackend::new(&config(redis.url())).unwrap();
    let refused = match anonymous.connect().await {
        Err(e) => e.to_string(),
        Ok(()) => anonymous
            .admit("free:acl", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT)
            .await
            .expect_err("no credentials, no access")
            .to_string(),
    };
    assert!(!refused.contains("pw"), "{refused}");

    // Rotation: the password changes on the server and in the file, and the guard's
    // connections are dropped. The next call fails, the failure drops the connection
    // because the file changed, and the recovery probe reconnects with the new one.
    let mut rotate = vec!["ACL", "SETUSER", "godel-guard", "resetpass", ">second-pw-5e07"];
    rotate.extend_from_slice(&grant);
    assert_eq!(admin(&redis, &rotate), "OK");
    std::fs::write(dir.join("password"), "second-pw-5e07\n").unwrap();
    admin(&redis, &["CLIENT", "KILL", "USER", "godel-guard"]);
    let mut errors = Vec::new();
    let mut recovered = false;
    for _ in 0..20 {
        match backend.admit("free:acl", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT).await {
            Ok(admission) => {
                recovered = admission.allowed();
                break;
            }
            Err(e) => errors.push(e.to_string()),
        }
        if let Err(e) = backend.ping().await {
            errors.push(e.to_string());
        }
    }
    assert!(recovered, "the rotated password was not picked up: {errors:?}");
    assert!(!errors.is_empty(), "the old connection was cut, so a call failed before the reconnect");
    for e in &errors {
        assert!(!e.contains("first-pw") && !e.contains("second-pw"), "a password in an error: {e}");
    }
    let key = "godel:rl:{free:acl}";
    assert_eq!(admin(&redis, &["EXISTS", key]), "1", "the bucket is in Redis");
}

/// openssl, as a test step: panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed here.
fn certificates(dir: &Path) {
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt"];
    openssl(dir, &[&ca[..], &["-days", "2", "-subj", "/CN=godel-test-ca"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let (key, csr, crt, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        let subject = format!("/CN=godel-test-{name}");
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subject]);
        let mut sign = vec!["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"];
        sign.extend_from_slice(&["-days", "2", "-out", &crt, "-extfile", &ext]);
        openssl(dir, &sign);
    }
}

#[tokio::test]
async fn tls_with_its_own_ca_and_a_client_certificate() {
    // The binary installs the process's TLS provider in main; a test process does it here.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = common::temp_dir("redis-tls");
    certificates(&dir);
    let tls_port = free_port();
    let path = |name: &str| dir.join(name).display().to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "yes",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let tls = |cert: bool| RedisTls {
        ca_file: Some(path("ca.crt")),
        cert_file: cert.then(|| path("client.crt")),
        key_file: cert.then(|| path("client.key")),
    };

    let mutual = RedisBackend::new(&RedisConfig { tls: Some(tls(true)), ..config(url.clone()) }).unwrap();
    mutual.connect().await.unwrap();
    assert!(mutual.admit("free:tls", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
    assert_eq!(redis.cli(&["EXISTS", "godel:rl:{free:tls}"]), "1", "written over TLS, read in plain text");

    for (what, tls) in [("without the client certificate", Some(tls(false))), ("without the CA", None)] {
        let backend = RedisBackend::new(&RedisConfig { tls, ..config(url.clone()) }).unwrap();
        let failed = match backend.connect().await {
            Err(_) => true,
            Ok(()) => backend.admit("free:tls", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT).await.is_err(),
        };
        assert!(failed, "a connection {what} was accepted");
    }
}

#[tokio::test]
async fn a_cluster_that_wants_a_password_gets_it_from_the_file() {
    let cluster = RedisCluster::start_with_password(3, Some("cluster-pw-0b4d"));
    let dir = common::temp_dir("redis-cluster-auth");
    std::fs::write(dir.join("password"), "cluster-pw-0b4d").unwrap();
    let urls: Vec<String> = cluster.nodes.iter().map(RedisServer::url).collect();
    let cluster_config = |password_file: Option<String>| RedisConfig {
        mode: RedisMode::Cluster,
        nodes: urls[1..].to_vec(),
        password_file,
        ..config(urls[0].clone())
    };
    let backend = RedisBackend::new(&cluster_config(Some(dir.join("password").display().to_string()))).unwrap();
    backend.connect().await.unwrap();
    // Users on every slot: each node was reached with the password.
    for user in 0..30 {
        assert!(
            backend
                .admit(&format!("free:user-{user}"), LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT)
                .await
                .unwrap()
                .allowed()
        );
    }
    let keys: usize = cluster.nodes.iter().map(|n| n.cli(&["DBSIZE"]).parse::<usize>().unwrap_or(0)).sum();
    assert_eq!(keys, 30, "one bucket per user across the cluster");
    assert!(cluster.nodes.iter().filter(|n| n.cli(&["DBSIZE"]) != "0").count() > 1, "spread over the masters");

    let anonymous = RedisBackend::new(&cluster_config(None)).unwrap();
    let refused = match anonymous.connect().await {
        Err(e) => e.to_string(),
        Ok(()) => anonymous
            .admit("free:user-0", LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT)
            .await
            .expect_err("no password, no access")
            .to_string(),
    };
    assert!(!refused.contains("cluster-pw"), "{refused}");
}
