//! Real `redis-server` processes on free loopback ports, for the tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: super::TestDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server on a port found free. Another process can take that port before the
    /// server binds it (a cluster node also needs port + 10000 for its bus), so a server
    /// that exits at once is started again on another port.
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let cluster = extra.contains(&"--cluster-enabled");
        let mut server = Self {
            port: 0,
            child: None,
            dir: super::temp_dir("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            server.port = if cluster { free_cluster_port() } else { free_port() };
            if server.try_spawn() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start on any of five free ports");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits for it to answer; `false` if it exits first.
    fn try_spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&*self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // A server with `--requirepass` answers an unauthenticated PING with NOAUTH: up too.
        while !matches!(redis_cli(self.port, &["PING"]).as_str(), "PONG" | "NOAUTH Authentication required.") {
            let exited = self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server on {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Kills the server abruptly (SIGKILL), as a crashed node would go.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as with
    /// a hung node or a network black hole.
    pub(crate) fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub(crate) fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    #[allow(unsafe_code)] // kill(2), below
    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("server running").id() as i32;
        // SAFETY: kill(2) on a child process we spawned and still own.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Starts again on the same port, empty (no persistence).
    pub(crate) fn restart(&mut self) {
        self.kill();
        assert!(self.try_spawn(), "redis-server did not start again on {}", self.port);
    }

    /// A command, authenticated with the server's `--requirepass` when it has one.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let password = self.extra.iter().position(|a| a == "--requirepass").and_then(|i| self.extra.get(i + 1));
        match password {
            Some(password) => redis_cli(self.port, &[&["-a", password, "--no-auth-warning"], args].concat()),
            None => redis_cli(self.port, args),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

/// A Sentinel watching `master` (quorum 1), so a failover needs only this one sentinel.
pub(crate) struct Sentinel {
    pub port: u16,
    child: Child,
    /// Its config file, which Sentinel rewrites as it runs.
    _dir: super::TestDir,
}

impl Sentinel {
    pub(crate) fn start(master: &RedisServer) -> Self {
        let port = free_port();
        let dir = super::temp_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n",
                dir.display(),
                master.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis_cli(port, &["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "sentinel did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child, _dir: dir }
    }

    /// The port of the master Sentinel currently names.
    pub(crate) fn master_port(&self) -> u16 {
        let answer = redis_cli(self.port, &["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `masters` master nodes without replicas.
pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) fn start(masters: usize) -> Self {
        Self::start_with_password(masters, None)
    }

    /// A cluster whose nodes want `password` (`requirepass`, and `masterauth` between them).
    pub(crate) fn start_with_password(masters: usize, password: Option<&str>) -> Self {
        let auth: Vec<&str> = password.map_or(vec![], |p| vec!["--requirepass", p, "--masterauth", p]);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|i| {
                let conf = format!("nodes-{}-{i}.conf", std::process::id());
                let args = [&["--cluster-enabled", "yes", "--cluster-config-file", &conf][..], &auth].concat();
                RedisServer::start_with(&args)
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes", "--no-auth-warning"])
            .args(password.map_or(vec![], |p| vec!["-a", p]))
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "cluster did not converge");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }
}
