//! The edge against hostile and careless clients, over real sockets to the guard binary:
//! slow clients are cut off on time, idle connections cannot exhaust descriptors, and a
//! shutdown ends at its timeout whatever the clients do, with its audit lines flushed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Guard;

const SMALL: &str = "tiers: [{name: free, ratePerSecond: 100, burst: 100}]\n";

/// The descriptors the guard process holds.
fn open_fds(guard: &Guard) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", guard.pid())).map(|d| d.count()).unwrap_or(0)
}

/// The guard's resident memory in KiB.
fn rss_kib(guard: &Guard) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", guard.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A GET on a new connection, answered within `within`; the status line.
fn get(guard: &Guard, path: &str, within: Duration) -> String {
    let mut stream = TcpStream::connect(guard.addr).expect("connect");
    stream.set_read_timeout(Some(within)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Reads until the server closes the connection or `within` passes; what was read and
/// whether the server closed it.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

/// Lets this test process hold tens of thousands of sockets.
#[allow(unsafe_code)] // getrlimit, below
fn fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur as usize
    }
}

#[allow(unsafe_code)] // getrlimit and setrlimit, below
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

#[test]
fn two_hundred_slow_clients_are_cut_off_and_others_are_served() {
    let guard = Guard::start(SMALL, &["--header-timeout-ms", "800", "--body-timeout-ms", "1500"]);
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(guard.addr).expect("connect");
        match i % 4 {
            // Nothing at all.
            0 => {}
            // Half a request head.
            1 => stream.write_all(b"POST /v1/inspect HTTP/1.1\r\nHost: guard\r\nContent-").unwrap(),
            // A head announcing more body than is sent.
            2 => stream
                .write_all(b"POST /v1/inspect HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user_id\":")
                .unwrap(),
            // A chunked body whose next chunk never comes.
            _ => stream
                .write_all(b"POST /v1/inspect HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"use\r\n")
                .unwrap(),
        }
        clients.push((i % 4, stream));
    }
    // The stalled clients do not stop anyone else.
    assert_eq!(get(&guard, "/livez", Duration::from_secs(2)), "HTTP/1.1 200 OK");
    for (kind, stream) in &mut clients {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(5));
        assert!(closed, "kind {kind} still open after {:?}", started.elapsed());
        if *kind >= 2 {
            assert!(answer.starts_with("HTTP/1.1 408"), "kind {kind}: {answer}");
            assert!(answer.contains(r#""code":"request_timeout""#), "kind {kind}: {answer}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5), "cut off in {:?}", started.elapsed());
    assert!(open_fds(&guard) < 64, "descriptors left open: {}", open_fds(&guard));
}

/// One request on an open keep-alive connection; its status line.
fn ask(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /livez HTTP/1.1\r\nHost: guard\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn idle_keep_alive_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    let guard = Guard::start(SMALL, &["--header-timeout-ms", "400", "--idle-timeout-ms", "3000"]);

    // Idle between requests for longer than the header timeout: still served, as a load
    // balancer reusing its connection expects.
    let mut reused = TcpStream::connect(guard.addr).unwrap();
    assert_eq!(ask(&mut reused), "HTTP/1.1 200 OK");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(ask(&mut reused), "HTTP/1.1 200 OK", "closed while idle, before the idle timeout");
    let idle_since = Instant::now();
    let (_, closed) = read_until_closed(&mut reused, Duration::from_secs(5));
    assert!(closed, "an idle connection outlived the idle timeout");
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(2500), "closed after {idle:?} idle, before the idle timeout");

    // A head begun after an idle spell still has only the header timeout to finish.
    let mut slow = TcpStream::connect(guard.addr).unwrap();
    assert_eq!(ask(&mut slow), "HTTP/1.1 200 OK");
    std::thread::sleep(Duration::from_millis(1000));
    slow.write_all(b"GET /livez HTTP/1.1\r\nHo").unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_millis(1500));
    assert!(closed, "a half-sent head outlived the header timeout");
    assert!(started.elapsed() < Duration::from_millis(1200), "cut off after {:?}", started.elapsed());

    // A new connection that sends nothing has the header timeout, not the idle one.
    let mut silent = TcpStream::connect(guard.addr).unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_millis(1500));
    assert!(closed && started.elapsed() < Duration::from_millis(1200), "silent for {:?}", started.elapsed());
}

#[test]
fn twenty_thousand_idle_connections_are_shed_and_reaped() {
    raise_fd_limit();
    // 20,000 when this process may hold that many sockets (some machines cap every
    // process at 20,000 descriptors); the cap well below the count either way.
    let count = 20_000.min(fd_limit().saturating_sub(256));
    let cap = (count / 4).min(1000);
    let guard = Guard::start(SMALL, &["--header-timeout-ms", "1500", "--max-connections", &cap.to_string()]);
    let (fds_before, rss_before) = (open_fds(&guard), rss_kib(&guard));
    let mut idle: Vec<TcpStream> = (0..count).map(|_| TcpStream::connect(guard.addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (fds_during, rss_during) = (open_fds(&guard), rss_kib(&guard));
    eprintln!(
        "guard with {count} idle clients: fds {fds_before} -> {fds_during}, RSS {rss_before} -> {rss_during} KiB"
    );
    assert!(fds_during < cap + 100, "the cap of {cap} holds: {fds_during} descriptors");
    // Those over the cap were told so, and closed.
    let mut shed = 0;
    for stream in &mut idle {
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = stream.read(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..n]);
            shed += usize::from(answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections"));
        }
    }
    assert!(shed >= count / 2, "only {shed} of {count} connections were shed with a 503");
    // Idle connections are closed at the header timeout: the guard answers again while
    // the clients stay.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&guard, "/livez", Duration::from_secs(1)) != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < deadline, "the guard did not recover while the idle clients stayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(&guard) >= 64 {
        assert!(Instant::now() < deadline, "idle connections were not reaped: {} descriptors", open_fds(&guard));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("after the clients left: fds {}, RSS {} KiB", open_fds(&guard), rss_kib(&guard));
}

#[test]
fn shutdown_ends_at_its_timeout_with_a_client_that_never_finishes() {
    let mut guard = Guard::start(
        SMALL,
        &["--drain-delay-ms", "300", "--shutdown-timeout-ms", "1000", "--body-timeout-ms", "60000"],
    );
    let mut done = TcpStream::connect(guard.addr).unwrap();
    let body = r#"{"user_id": "finished", "prompt": "hello"}"#;
    write!(
        done,
        "POST /v1/inspect HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut done, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut keep_alive = TcpStream::connect(guard.addr).unwrap();
    keep_alive.write_all(b"GET /livez HTTP/1.1\r\nHost: guard\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    assert!(keep_alive.read(&mut buf).unwrap() > 0);
    // A request whose body keeps coming, a byte every 200 ms, well above no rate at all.
    let mut trickle = TcpStream::connect(guard.addr).unwrap();
    trickle
        .write_all(b"POST /v1/inspect HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let feeder = std::thread::spawn(move || {
        while trickle.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(200));
        }
    });

    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    guard.sigterm();
    // The idle keep-alive connection is closed at once, not left to a broken pipe.
    let (_, closed) = read_until_closed(&mut keep_alive, Duration::from_millis(250));
    assert!(closed, "the idle keep-alive connection was not closed when draining started");
    // During the drain, answers tell clients to go.
    let mut during = TcpStream::connect(guard.addr).unwrap();
    during.write_all(b"GET /livez HTTP/1.1\r\nHost: guard\r\n\r\n").unwrap();
    let (answer, closed) = read_until_closed(&mut during, Duration::from_secs(1));
    assert!(closed && answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    let status = guard.wait_exit(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_millis(300 + 1000 + 1500), "exit took {took:?}");
    assert!(took >= Duration::from_millis(300 + 1000), "the drain and the timeout were honoured: {took:?}");
    feeder.join().unwrap();
    let lines = guard.audit_lines();
    assert_eq!(lines.len(), 1, "the finished request's audit line was flushed: {lines:?}");
    let stderr = guard.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("dropping their connections"), "{stderr}");
}
