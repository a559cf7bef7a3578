use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "models = [\"process\", \"distroless\"]\n";

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("scenarios/test.toml"))
}

fn rejection(text: &str) -> (usize, String) {
    match parse(text) {
        Err(ScenarioError::Invalid { line, message, path }) => {
            assert_eq!(path, Path::new("scenarios/test.toml"));
            (line, message)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn minimal_gets_defaults() {
    let scenario = parse(MINIMAL).unwrap();
    assert_eq!(scenario.name, "test");
    assert_eq!(scenario.models, vec![ModelKind::Process, ModelKind::Distroless]);
    assert_eq!(scenario.boot.repetitions, 5);
    assert_eq!(scenario.boot.poll_interval, Duration::from_millis(1));
    assert_eq!(scenario.load.connections, 4);
    assert_eq!(scenario.limits.memory_mib, 384);
    assert_eq!(scenario.source_text, MINIMAL);
}

#[test]
fn full_file_parses() {
    let text = r#"
name = "full"
description = "every key"
models = ["fat-image"]

[boot]
repetitions = 20
timeout_s = 90
poll_interval_ms = 0.5

[memory]
settle_s = 3

[load]
rate = 250.5
duration_s = 60
warmup_s = 5
connections = 16
path = "/work?n=10"
request_timeout_s = 2

[limits]
cpus = 1.5
memory_mib = 256
"#;
    let scenario = parse(text).unwrap();
    assert_eq!(scenario.name, "full");
    assert_eq!(scenario.boot.repetitions, 20);
    assert_eq!(scenario.boot.poll_interval, Duration::from_micros(500));
    assert_eq!(scenario.load.rate, 250.5);
    assert_eq!(scenario.load.duration, Duration::from_secs(60));
    assert_eq!(scenario.limits.cpus, 1.5);
}

#[test]
fn unknown_key_names_key_and_line() {
    let (line, message) = rejection("models = [\"process\"]\n[load]\nrate = 5\nrat = 5\n");
    assert_eq!(line, 4);
    assert!(message.contains("rat"), "{message}");
}

#[test]
fn unknown_top_level_key_rejected() {
    let (line, message) = rejection("models = [\"process\"]\nrepetitions = 3\n");
    assert_eq!(line, 2);
    assert!(message.contains("repetitions"), "{message}");
}

#[test]
fn wrong_type_rejected() {
    let (line, message) = rejection("models = [\"process\"]\n[boot]\nrepetitions = \"five\"\n");
    assert_eq!(line, 3);
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn zero_and_negative_values_rejected() {
    let cases = [
        ("[load]\nrate = 0\n", "load.rate"),
        ("[load]\nrate = -5\n", "load.rate"),
        ("[load]\nduration_s = 0\n", "load.duration_s"),
        ("[load]\nconnections = 0\n", "load.connections"),
        ("[boot]\nrepetitions = 0\n", "boot.repetitions"),
        ("[boot]\npoll_interval_ms = 5\n", "boot.poll_interval_ms"),
        ("[limits]\nmemory_mib = 1\n", "limits.memory_mib"),
        ("[limits]\ncpus = 0\n", "limits.cpus"),
        ("[load]\nrate = nan\n", "load.rate"),
    ];
    for (section, key) in cases {
        let text = format!("models = [\"process\"]\n{section}");
        let (line, message) = rejection(&text);
        assert_eq!(line, 3, "{key}: {message}");
        assert!(message.contains(key), "{key}: {message}");
    }
}

#[test]
fn absurd_sizes_rejected() {
    let (_, message) = rejection("models = [\"process\"]\n[boot]\nrepetitions = 1000000\n");
    assert!(message.contains("out of range"), "{message}");
    let (_, message) = rejection("models = [\"process\"]\n[limits]\nmemory_mib = 99999999999\n");
    assert!(message.contains("limits.memory_mib"), "{message}");
}

#[test]
fn unknown_model_rejected() {
    let (line, message) = rejection("name = \"x\"\nmodels = [\"process\", \"kubernetes\"]\n");
    assert_eq!(line, 2);
    assert!(message.contains("kubernetes"), "{message}");
    assert!(message.contains("distroless"), "lists the known models: {message}");
}

#[test]
fn duplicate_and_empty_models_rejected() {
    let (_, message) = rejection("models = [\"process\", \"process\"]\n");
    assert!(message.contains("twice"), "{message}");
    let (_, message) = rejection("models = []\n");
    assert!(message.contains("at least one"), "{message}");
    let (_, message) = rejection("name = \"x\"\n");
    assert!(message.contains("models"), "{message}");
}

#[test]
fn bad_path_rejected() {
    let (_, message) = rejection("models = [\"process\"]\n[load]\npath = \"work\"\n");
    assert!(message.contains("load.path"), "{message}");
}

#[test]
fn shipped_scenarios_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in ["quick.toml", "standard.toml"] {
        let scenario = Scenario::load(&root.join(name)).unwrap();
        assert!(!scenario.models.is_empty(), "{name}");
    }
}

#[test]
fn vm_model_named_vm() {
    assert_eq!(ModelKind::from_name("vm"), Some(ModelKind::Vm));
    assert_eq!(ModelKind::Vm.name(), "vm");
    let scenario = parse("models = [\"vm\"]\n").unwrap();
    assert_eq!(scenario.models, vec![ModelKind::Vm]);
}

#[test]
fn vm_section_defaults() {
    let scenario = parse(MINIMAL).unwrap();
    assert_eq!(scenario.vm.vcpus, 1);
    assert_eq!(scenario.vm.memory_mib, 1024);
    assert_eq!(scenario.vm.accelerator, VmAccelerator::Auto);
    assert_eq!(scenario.vm.boots, 3);
    assert_eq!(scenario.vm.timeout, Duration::from_secs(300));
}

#[test]
fn vm_section_parses() {
    let text = r#"
models = ["vm"]

[vm]
vcpus = 2
memory_mib = 512
accelerator = "tcg"
boots = 1
timeout_s = 120.5
"#;
    let scenario = parse(text).unwrap();
    assert_eq!(scenario.vm.vcpus, 2);
    assert_eq!(scenario.vm.memory_mib, 512);
    assert_eq!(scenario.vm.accelerator, VmAccelerator::Tcg);
    assert_eq!(scenario.vm.boots, 1);
    assert_eq!(scenario.vm.timeout, Duration::from_secs_f64(120.5));
    let kvm = parse("models = [\"vm\"]\n[vm]\naccelerator = \"kvm\"\n").unwrap();
    assert_eq!(kvm.vm.accelerator, VmAccelerator::Kvm);
}

#[test]
fn vm_invalid_values_rejected() {
    let cases = [
        ("vcpus = 0\n", "vm.vcpus"),
        ("vcpus = 1000\n", "vm.vcpus"),
        ("memory_mib = 64\n", "vm.memory_mib"),
        ("boots = 0\n", "vm.boots"),
        ("timeout_s = 0\n", "vm.timeout_s"),
        ("timeout_s = nan\n", "vm.timeout_s"),
        ("accelerator = \"hvf\"\n", "vm.accelerator"),
    ];
    for (line_text, key) in cases {
        let text = format!("models = [\"vm\"]\n[vm]\n{line_text}");
        let (line, message) = rejection(&text);
        assert_eq!(line, 3, "{key}: {message}");
        assert!(message.contains(key), "{key}: {message}");
    }
}

#[test]
fn vm_accelerator_error_lists_choices() {
    let (_, message) = rejection("models = [\"vm\"]\n[vm]\naccelerator = \"KVM\"\n");
    assert!(message.contains("auto, kvm, tcg"), "{message}");
}

#[test]
fn vm_unknown_key_rejected() {
    let (line, message) = rejection("models = [\"vm\"]\n[vm]\nvcpus = 1\ncpus = 2\n");
    assert_eq!(line, 4);
    assert!(message.contains("cpus"), "{message}");
}

#[test]
fn function_model_named_function() {
    assert_eq!(ModelKind::from_name("function"), Some(ModelKind::Function));
    assert_eq!(ModelKind::Function.name(), "function");
    let scenario = parse("models = [\"function\"]\n").unwrap();
    assert_eq!(scenario.models, vec![ModelKind::Function]);
}

#[test]
fn function_section_defaults() {
    let scenario = parse(MINIMAL).unwrap();
    assert_eq!(scenario.function.keep_warm, Duration::from_secs(5));
    assert_eq!(scenario.function.max_instances, 4);
    assert_eq!(scenario.function.concurrency, 1);
    assert_eq!(scenario.function.queue_limit, 64);
    assert_eq!(scenario.function.queue_timeout, Duration::from_secs(10));
}

#[test]
fn function_section_parses() {
    let text = r#"
models = ["function"]

[function]
keep_warm_s = 2.5
max_instances = 8
concurrency = 4
queue_limit = 0
queue_timeout_s = 0.5
"#;
    let scenario = parse(text).unwrap();
    assert_eq!(scenario.function.keep_warm, Duration::from_millis(2500));
    assert_eq!(scenario.function.max_instances, 8);
    assert_eq!(scenario.function.concurrency, 4);
    assert_eq!(scenario.function.queue_limit, 0);
    assert_eq!(scenario.function.queue_timeout, Duration::from_millis(500));
}

#[test]
fn function_invalid_values_rejected() {
    let cases = [
        ("keep_warm_s = 0\n", "function.keep_warm_s"),
        ("keep_warm_s = nan\n", "function.keep_warm_s"),
        ("max_instances = 0\n", "function.max_instances"),
        ("max_instances = 100000\n", "function.max_instances"),
        ("concurrency = 0\n", "function.concurrency"),
        ("queue_limit = 2000000\n", "function.queue_limit"),
        ("queue_timeout_s = 0\n", "function.queue_timeout_s"),
    ];
    for (line_text, key) in cases {
        let text = format!("models = [\"function\"]\n[function]\n{line_text}");
        let (line, message) = rejection(&text);
        assert_eq!(line, 3, "{key}: {message}");
        assert!(message.contains(key), "{key}: {message}");
    }
}

#[test]
fn function_unknown_key_rejected() {
    let (line, message) = rejection("models = [\"function\"]\n[function]\nkeep_warm_s = 9\nwarm_s = 2\n");
    assert_eq!(line, 4);
    assert!(message.contains("warm_s"), "{message}");
}

#[test]
fn load_pattern_defaults() {
    let scenario = parse(MINIMAL).unwrap();
    assert_eq!(scenario.load.patterns, vec![LoadPattern::Steady]);
    assert_eq!(scenario.load.burst_requests, 10);
    assert_eq!(scenario.load.bursts, 3);
    assert_eq!(scenario.load.spike_concurrency, 16);
    assert_eq!(scenario.load.burst_gap, Duration::from_secs(7), "keep_warm_s 5 plus 2 s");
}

#[test]
fn load_pattern_string_or_array() {
    let single = parse("models = [\"function\"]\n[load]\npattern = \"spike\"\n").unwrap();
    assert_eq!(single.load.patterns, vec![LoadPattern::Spike]);
    let text = r#"
models = ["function", "distroless"]
[load]
pattern = ["bursty", "spike", "steady"]
burst_requests = 5
burst_gap_s = 8
bursts = 2
spike_concurrency = 12
[function]
keep_warm_s = 3
"#;
    let scenario = parse(text).unwrap();
    assert_eq!(scenario.load.patterns, vec![LoadPattern::Bursty, LoadPattern::Spike, LoadPattern::Steady]);
    assert_eq!(scenario.load.burst_requests, 5);
    assert_eq!(scenario.load.burst_gap, Duration::from_secs(8));
    assert_eq!(scenario.load.bursts, 2);
    assert_eq!(scenario.load.spike_concurrency, 12);
}

#[test]
fn load_pattern_invalid_rejected() {
    let cases = [
        ("pattern = \"ramp\"\n", "one of steady, bursty, spike"),
        ("pattern = 3\n", "load.pattern 3 is invalid"),
        ("pattern = []\n", "at least one"),
        ("pattern = [\"spike\", \"spike\"]\n", "twice"),
        ("burst_requests = 0\n", "load.burst_requests"),
        ("bursts = 0\n", "load.bursts"),
        ("spike_concurrency = 0\n", "load.spike_concurrency"),
        ("burst_gap_s = 0\n", "load.burst_gap_s"),
    ];
    for (line_text, expected) in cases {
        let text = format!("models = [\"process\"]\n[load]\n{line_text}");
        let (line, message) = rejection(&text);
        assert_eq!(line, 3, "{expected}: {message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }
}

#[test]
fn burst_gap_within_keep_warm_rejected() {
    let text = "models = [\"function\"]\n[function]\nkeep_warm_s = 5\n[load]\nburst_gap_s = 5\n";
    let (line, message) = rejection(text);
    assert_eq!(line, 5);
    assert!(message.contains("load.burst_gap_s = 5"), "{message}");
    assert!(message.contains("longer than function.keep_warm_s = 5"), "{message}");
}

#[test]
fn burst_gap_free_without_function() {
    let text = "models = [\"distroless\"]\n[function]\nkeep_warm_s = 5\n[load]\nburst_gap_s = 1\n";
    let scenario = parse(text).unwrap();
    assert_eq!(scenario.load.burst_gap, Duration::from_secs(1));
}

#[test]
fn keep_warm_within_settle_rejected() {
    let text = "models = [\"function\"]\n[memory]\nsettle_s = 3\n[function]\nkeep_warm_s = 2\n";
    let (line, message) = rejection(text);
    assert_eq!(line, 5);
    assert!(message.contains("function.keep_warm_s = 2"), "{message}");
    assert!(message.contains("memory.settle_s = 3"), "{message}");

    let default_keep_warm = "models = [\"function\"]\n[memory]\nsettle_s = 5\n";
    let (line, message) = rejection(default_keep_warm);
    assert_eq!(line, 3, "points at settle_s when keep_warm_s is not set: {message}");
}

#[test]
fn service_ready_delay_parsed() {
    let scenario = parse("models = [\"process\"]\n[service]\nready_delay_ms = 250\n").unwrap();
    assert_eq!(scenario.service.ready_delay, Duration::from_millis(250));
    assert_eq!(parse(MINIMAL).unwrap().service.ready_delay, Duration::ZERO);
    let (line, message) = rejection("models = [\"process\"]\n[service]\nready_delay_ms = -1\n");
    assert_eq!(line, 3, "{message}");
}

#[test]
fn pull_and_deploy_default_off() {
    let scenario = parse(MINIMAL).unwrap();
    assert!(!scenario.pull.enabled);
    assert_eq!(scenario.pull.repetitions, 3);
    let names: Vec<&str> = scenario.pull.profiles.iter().map(|profile| profile.name.as_str()).collect();
    assert_eq!(names, vec!["lan-1g", "cloud-100m", "edge-20m"]);
    assert_eq!(scenario.pull.profiles[1].bandwidth_mbit, 100.0);
    assert_eq!(scenario.pull.profiles[2].delay_ms, 40.0);
    assert!(!scenario.deploy.enabled);
    assert_eq!(scenario.deploy.repetitions, 3);
}

#[test]
fn pull_section_parses() {
    let text = r#"
models = ["distroless", "fat-image"]

[pull]
enabled = true
repetitions = 2

[[pull.profiles]]
name = "dsl-8m"
bandwidth_mbit = 8
delay_ms = 25.5

[[pull.profiles]]
name = "lan"
bandwidth_mbit = 1000

[deploy]
enabled = true
repetitions = 5
"#;
    let scenario = parse(text).unwrap();
    assert!(scenario.pull.enabled);
    assert_eq!(scenario.pull.repetitions, 2);
    assert_eq!(
        scenario.pull.profiles,
        vec![
            LinkProfile { name: "dsl-8m".to_string(), bandwidth_mbit: 8.0, delay_ms: 25.5 },
            LinkProfile { name: "lan".to_string(), bandwidth_mbit: 1000.0, delay_ms: 0.0 },
        ]
    );
    assert!(scenario.deploy.enabled);
    assert_eq!(scenario.deploy.repetitions, 5);
}

#[test]
fn pull_invalid_values_rejected() {
    let profile = |body: &str| format!("models = [\"distroless\"]\n[[pull.profiles]]\n{body}");
    let cases = [
        (profile("name = \"a\"\nbandwidth_mbit = 0\n"), 4, "pull.profiles[0].bandwidth_mbit"),
        (profile("name = \"a\"\nbandwidth_mbit = 10\ndelay_ms = -1\n"), 5, "pull.profiles[0].delay_ms"),
        (profile("name = \"Cloud 100\"\nbandwidth_mbit = 10\n"), 3, "pull.profiles[0].name"),
        (profile("name = \"a/b\"\nbandwidth_mbit = 10\n"), 3, "pull.profiles[0].name"),
        (profile("name = \"unshaped\"\nbandwidth_mbit = 10\n"), 3, "reserved"),
        (profile("name = \"a\"\nbandwidth_mbit = 10\nrate = 3\n"), 5, "rate"),
        ("models = [\"distroless\"]\n[pull]\nrepetitions = 0\n".to_string(), 3, "pull.repetitions"),
        ("models = [\"distroless\"]\n[pull]\nprofiles = []\n".to_string(), 3, "at least one link profile"),
        ("models = [\"distroless\"]\n[pull]\nenabled = \"yes\"\n".to_string(), 3, "invalid type"),
        ("models = [\"distroless\"]\n[deploy]\nrepetitions = 0\n".to_string(), 3, "deploy.repetitions"),
        ("models = [\"distroless\"]\n[deploy]\nrepetition = 2\n".to_string(), 3, "repetition"),
    ];
    for (text, expected_line, expected) in cases {
        let (line, message) = rejection(&text);
        assert_eq!(line, expected_line, "{expected}: {message}");
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
}

#[test]
fn pull_duplicate_profile_names_rejected() {
    let text = "models = [\"distroless\"]\n\
                [[pull.profiles]]\nname = \"a\"\nbandwidth_mbit = 10\n\
                [[pull.profiles]]\nname = \"a\"\nbandwidth_mbit = 20\n";
    let (line, message) = rejection(text);
    assert_eq!(line, 6);
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn pull_profile_without_bandwidth_rejected() {
    let (line, message) = rejection("models = [\"distroless\"]\n[[pull.profiles]]\nname = \"a\"\n");
    assert!(line >= 2, "{line}: {message}");
    assert!(message.contains("bandwidth_mbit"), "{message}");
}

mod fuzz {
    //! Property tests: no input makes the parser panic, and every rejection points at a
    //! line of the file.

    use super::*;
    use proptest::prelude::*;

    const SECTIONS: [&str; 10] = ["", "boot", "memory", "load", "limits", "service", "vm", "function", "pull", "deploy"];
    const KEYS: [&str; 16] = [
        "models", "name", "repetitions", "timeout_s", "settle_s", "rate", "duration_s", "warmup_s", "connections",
        "path", "cpus", "memory_mib", "boots", "accelerator", "keep_warm_s", "enabled",
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            Just("nan".to_string()),
            Just("-inf".to_string()),
            "[a-z\\-/?=]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("[\"process\", \"vm\"]".to_string()),
            Just("[]".to_string()),
            Just("true".to_string()),
            Just("{ a = 1 }".to_string()),
        ]
    }

    fn document() -> impl Strategy<Value = String> {
        prop::collection::vec((0..SECTIONS.len(), 0..KEYS.len(), value()), 0..12).prop_map(|entries| {
            let mut text = String::from("models = [\"process\"]\n");
            for (section, key, value) in entries {
                if !SECTIONS[section].is_empty() {
                    text.push_str(&format!("[{}]\n", SECTIONS[section]));
                }
                text.push_str(&format!("{} = {value}\n", KEYS[key]));
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn generated_scenarios_accepted_or_located(text in document()) {
            match parse(&text) {
                Ok(scenario) => prop_assert!(!scenario.models.is_empty()),
                Err(ScenarioError::Invalid { line, .. }) => {
                    prop_assert!(line >= 1);
                    prop_assert!(line <= text.lines().count() + 1, "line {} of {} lines", line, text.lines().count());
                }
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }
}

#[test]
fn name_outside_run_folder_rejected() {
    for name in ["../../tmp/escaped", "a/b", ".hidden", "-flag", "tab\there", &"x".repeat(65)] {
        let (line, message) = rejection(&format!("models = [\"process\"]\nname = {name:?}\n"));
        assert_eq!(line, 2, "{name}: {message}");
        assert!(message.contains("is invalid: use 1 to 64 ASCII letters"), "{name}: {message}");
    }
    let scenario = parse("models = [\"process\"]\nname = \"ci-gate_2.v1\"\n").unwrap();
    assert_eq!(scenario.name, "ci-gate_2.v1");
}

#[test]
fn default_name_is_folder_safe() {
    assert_eq!(Scenario::default_name(Path::new("scenarios/quick.toml")), "quick");
    assert_eq!(Scenario::default_name(Path::new("/tmp/my scenario.toml")), "my-scenario");
    assert_eq!(Scenario::default_name(Path::new("/tmp/..toml")), "scenario");
    assert_eq!(Scenario::default_name(Path::new("/tmp/.toml")), "scenario");
}

#[test]
fn type_errors_name_the_key() {
    let cases = [
        ("models = [\"process\"]\n[load]\nrate = \"fast\"\n", 3, "load.rate: invalid type: string \"fast\", expected f64"),
        ("models = \"process\"\n", 1, "models: invalid type: string \"process\", expected a sequence"),
        ("models = [\"process\"]\n[boot]\nrepetitions = 5.5\n", 3, "boot.repetitions: invalid type: floating point `5.5`, expected u32"),
        (
            "models = [\"process\"]\n[pull]\nprofiles = [{ name = \"x\", bandwidth_mbit = \"a\", delay_ms = 1 }]\n",
            3,
            "pull.profiles[0].bandwidth_mbit: invalid type: string \"a\", expected f64",
        ),
        ("models = [\"process\"\n", 2, "invalid array: expected `]`"),
    ];
    for (text, expected_line, expected_message) in cases {
        let (line, message) = rejection(text);
        assert_eq!(line, expected_line, "{text}");
        assert_eq!(message, expected_message, "{text}");
    }
    let (_, message) = rejection("models = [\"process\"]\n[boot]\nrepetitionz = 5\n");
    assert!(message.starts_with("boot: unknown field `repetitionz`, expected one of `repetitions`"), "{message}");
}
