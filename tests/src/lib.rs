//! Tests that cross components live in `tests/`: the shipped samples against the guard's
//! own loader, and (as the operator and packaging land) rendered manifests and alert
//! rules against their real checkers.
