//! Every guard config sample in `config/guard` must load and pass the guard's start-up
//! checks, so the README never points users at a broken file.

#[test]
fn sample_guard_configs_pass_the_guards_checks() {
    let dir = godel_tests::repo().join("config/guard");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/guard exists") {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("guard-config") {
            continue;
        }
        let config = godel_guard::config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        godel_guard::server::build_check(&config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 1, "no guard-config samples found in {}", dir.display());
}

/// The ConfigMap the operator renders is read by the guard's own loader and passes its
/// start-up checks.
#[test]
fn the_operators_rendered_config_is_what_the_guard_loads() {
    let policy: godel_crds::GuardrailPolicy = serde_yaml::from_str(
        "apiVersion: guardrails.godel.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: p, namespace: n}\n\
         spec: {guard: {defaultTier: premium}, deployment: {replicas: 4}}\n",
    )
    .expect("policy");
    let config = godel_operator::resources::GuardConfigFile::render(&policy).expect("renders");
    let map = godel_operator::resources::config_map(&policy, &config);
    let text = &map.data.as_ref().expect("data")["config.yaml"];
    let loaded = godel_guard::config::parse(text).expect("the guard loads it");
    assert_eq!(loaded.default_tier, "premium");
    assert_eq!(map.data.as_ref().expect("data")["fleet-size"], "4");
    godel_guard::server::build_check(&loaded).expect("and accepts it");
}

/// The Ingress routes exactly the guard's client-facing API, never `/metrics` or probes.
#[test]
fn the_ingress_routes_the_guards_api_routes() {
    use godel_guard::http::ROUTES;
    let public = godel_operator::resources::PUBLIC_PATHS;
    assert!(public.iter().all(|(p, _)| ROUTES.contains(p)), "{public:?} must be guard routes");
    let routed = |route: &str| {
        public.iter().any(|(path, kind)| {
            route == *path || (*kind == "Prefix" && route.strip_prefix(path).is_some_and(|rest| rest.starts_with('/')))
        })
    };
    for route in ROUTES {
        assert_eq!(routed(route), route.starts_with("/v1/"), "{route}: the API and nothing else is routed");
    }
}
