//! Pull policies and the platform check.

use oz_agent_worker::backend::{Backend, Completion, FailureReason};
use oz_agent_worker::settings::PullPolicy;

use crate::support::docker_images::{FakeRegistry, import_image, task_layer};

use super::*;

/// A local image whose registry (`127.0.0.1:1`) cannot be reached: any pull of it fails.
fn unreachable_local_image(f: &Fixture) -> String {
    import_image(&f.client, &f.res, "127.0.0.1:1/oz-test/task", &task_layer())
}

#[test]
fn never_with_a_missing_image_is_image_pull_with_upstreams_message() {
    let f = Fixture::new();
    let b = f.backend_with(f.settings(PullPolicy::Never), true, f.env());
    let mut spec = f.spec(&unique("never"), &[]);
    spec.image = format!("oz-test/missing:{}", unique("tag"));
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ImagePull);
    assert_eq!(
        e.message,
        format!(
            "image {} not found locally and pull policy is Never",
            spec.image
        )
    );
    f.assert_clean();
}

#[test]
fn never_and_if_not_present_use_a_present_image_without_pulling() {
    let f = Fixture::new();
    let image = unreachable_local_image(&f);
    for policy in [PullPolicy::Never, PullPolicy::IfNotPresent] {
        let b = f.backend_with(f.settings(policy), true, f.env());
        let mut spec = f.spec(&unique("present"), &[]);
        spec.image = image.clone();
        // A pull would have failed: the image's registry is unreachable.
        assert_eq!(
            b.execute(&spec, &token()),
            Ok(Completion::Finished),
            "{policy:?}"
        );
    }
    f.assert_clean();
}

#[test]
fn always_pulls_even_a_present_image_and_an_unreachable_registry_is_image_pull() {
    let f = Fixture::new();
    let image = unreachable_local_image(&f);
    let b = f.backend_with(f.settings(PullPolicy::Always), true, f.env());
    let mut spec = f.spec(&unique("always"), &[]);
    spec.image = image.clone();
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ImagePull);
    assert!(
        e.message
            .starts_with(&format!("failed to pull image {image}: ")),
        "{}",
        e.message
    );
    f.assert_clean();
}

#[test]
fn a_sidecar_image_that_cannot_be_had_is_sidecar_prep() {
    let f = Fixture::new();
    let b = f.backend_with(f.settings(PullPolicy::Never), true, f.env());
    let mut spec = f.spec(&unique("nosidecar"), &[]);
    spec.sidecars[0].image = format!("oz-test/missing-agent:{}", unique("tag"));
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::SidecarPrep);
    assert!(
        e.message
            .contains("not found locally and pull policy is Never"),
        "{}",
        e.message
    );
    // Upstream's validation messages.
    spec.sidecars[0].image = " ".into();
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            FailureReason::SidecarPrep,
            "additional sidecar has empty image"
        )
    );
    f.assert_clean();
}

#[test]
fn an_image_for_another_platform_is_refused() {
    let f = Fixture::new();
    let other = if docker_arch_is_amd64() {
        "arm64"
    } else {
        "amd64"
    };
    let registry = FakeRegistry::serve(other, None, vec![("oz-test/foreign", "1", task_layer())]);
    let image = f.res.image(&registry.image_ref());
    let b = f.backend_with(f.settings(PullPolicy::Always), true, f.env());
    let mut spec = f.spec(&unique("platform"), &[]);
    spec.image = image.clone();
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ImagePull);
    // The engine pulls a single-platform manifest for any platform; the check after it refuses.
    let ours = crate::support::docker_images::docker_arch();
    assert_eq!(
        e.message,
        format!(
            "image {image} is for platform linux/{other}, but this worker requires linux/{ours}"
        )
    );
    f.assert_clean();
}

fn docker_arch_is_amd64() -> bool {
    crate::support::docker_images::docker_arch() == "amd64"
}
