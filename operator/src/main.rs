//! The operator arrives with issue #5; until then the binary says so instead of
//! pretending to reconcile anything.

fn main() -> std::process::ExitCode {
    eprintln!("godel-operator: not implemented yet (see issue #5); the guard runs standalone meanwhile");
    std::process::ExitCode::FAILURE
}
