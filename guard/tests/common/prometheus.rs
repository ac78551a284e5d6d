//! A real Prometheus scraping a guard every second, and its query API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::redis::free_port;

pub(crate) struct Prometheus {
    child: Child,
    pub(crate) url: String,
    /// Its config and storage, kept while it runs.
    _dir: super::TestDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` as job `godel-guard`, with `labels` (a YAML flow map, as a
    /// Kubernetes service discovery would add `namespace`) and the `rules` files loaded.
    pub(crate) fn start(target: &str, labels: &str, rules: &[&str]) -> Self {
        let dir = super::temp_dir("prometheus");
        let rules: Vec<String> = rules.iter().map(|r| format!("\"{r}\"")).collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n  - job_name: godel-guard\n    \
                 static_configs: [{{targets: [\"{target}\"], labels: {labels}}}]\n",
                rules.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (Debian package prometheus; scripts/setup.sh installs it)");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The series `expr` returns now; none while Prometheus is still starting.
    pub(crate) async fn query(&self, expr: &str) -> Vec<Value> {
        let response =
            reqwest::Client::new().get(format!("{}/api/v1/query", self.url)).query(&[("query", expr)]).send().await;
        match response {
            Ok(r) => r
                .json::<Value>()
                .await
                .map(|v| v["data"]["result"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The series `expr` returns once it returns any, within 30 seconds.
    pub(crate) async fn eventually(&self, expr: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = self.query(expr).await;
            if !result.is_empty() {
                return result;
            }
            assert!(Instant::now() < deadline, "Prometheus never returned {expr}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The values `label` takes on the series `matcher` selects (Grafana's
    /// `label_values(matcher, label)`).
    pub(crate) async fn label_values(&self, label: &str, matcher: &str) -> Vec<String> {
        let url = format!("{}/api/v1/label/{label}/values", self.url);
        let answer: Value =
            reqwest::Client::new().get(url).query(&[("match[]", matcher)]).send().await.unwrap().json().await.unwrap();
        answer["data"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }
}
