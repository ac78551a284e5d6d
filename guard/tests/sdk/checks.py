"""What the SDK scripts share: checks registered with @check, run in order, each failure
reported, and the exit code saying whether all passed (the Rust test reads the summary)."""

import sys

registered = []


def check(f):
    registered.append(f)
    return f


def expect(error, call):
    """The exception of type `error` that `call` raises; failing if it raises none."""
    try:
        call()
    except error as e:
        return e
    raise AssertionError(f"expected {error.__name__}")


def run(sdk, version):
    failed = 0
    for f in registered:
        try:
            f()
            print(f"ok   {f.__name__}")
        except Exception as e:  # every failure is reported, then the exit code says so
            failed += 1
            print(f"FAIL {f.__name__}: {type(e).__name__}: {e}")
    print(f"{sdk} {version}: {len(registered) - failed} of {len(registered)} checks passed")
    sys.exit(1 if failed else 0)
