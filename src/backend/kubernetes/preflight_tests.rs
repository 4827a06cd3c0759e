use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::backend::kubernetes::fixtures::{self, WORKER};

const NAME: &str = "oz-preflight-18093e768f0e7bed-1";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_226_325)
}

#[test]
fn copy_mode_runs_a_root_init_container() {
    let k = fixtures::settings();
    let job = preflight_job(NAME, WORKER, &k);
    assert_eq!(job["metadata"]["name"], NAME);
    assert_eq!(job["metadata"]["namespace"], "agents");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let init = pod["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["name"], "root-init-preflight");
    assert_eq!(init[0]["image"], "busybox:1.36");
    assert_eq!(init[0]["securityContext"]["runAsUser"], 0);
    assert_eq!(init[0]["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    assert_eq!(pod["containers"][0]["name"], "main");
    assert!(pod.get("volumes").is_none());
    // Not a task Job: re-attach must not list it.
    assert!(job["metadata"]["labels"].get("oz-worker-hash").is_none());
    assert_eq!(
        job["metadata"]["labels"]["oz-preflight"],
        "18093e768f0e7bed"
    );
}

#[test]
fn image_volume_mode_mounts_the_preflight_image() {
    let mut k = fixtures::settings();
    k.use_image_volumes = true;
    k.pod_template = Some(json!({
        "serviceAccountName": "agent-sa",
        "imagePullSecrets": [{"name": "regcred"}],
        "initContainers": [{"name": "x", "image": "x"}],
        "containers": [{"name": "task", "image": "ignored"}],
    }));
    k.preflight_resources = Some(json!({"requests": {"cpu": "20m"}}));
    k.extra_labels = BTreeMap::from([("team".into(), "infra".into())]);
    let job = preflight_job(NAME, WORKER, &k);
    let pod = &job["spec"]["template"]["spec"];
    assert!(pod.get("initContainers").is_none());
    assert_eq!(pod["serviceAccountName"], "agent-sa");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(
        pod["volumes"],
        json!([{"name": "preflight-image", "image": {"reference": "busybox:1.36", "pullPolicy": "IfNotPresent"}}])
    );
    let main = &pod["containers"][0];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    assert_eq!(main["name"], "main");
    assert_eq!(main["command"][2], "test -d /preflight-image");
    assert_eq!(
        main["volumeMounts"],
        json!([{"name": "preflight-image", "mountPath": "/preflight-image", "readOnly": true}])
    );
    assert_eq!(main["resources"], json!({"requests": {"cpu": "20m"}}));
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["team"],
        "infra"
    );
}

fn pending_pod() -> Value {
    json!({"metadata": {"name": "p", "uid": "pod-uid"}, "status": {"phase": "Pending"}})
}

#[test]
fn copy_mode_passes_once_a_pod_exists() {
    let k = fixtures::settings();
    assert_eq!(verdict(NAME, &k, None, &[], &[], now()), State::Waiting);
    assert_eq!(
        verdict(NAME, &k, None, &[pending_pod()], &[], now()),
        State::Passed
    );
}

#[test]
fn failed_create_event_fails_the_preflight() {
    let k = fixtures::settings();
    let job = json!({"metadata": {"uid": "job-uid"}});
    let event = json!({"type": "Warning", "reason": "FailedCreate", "involvedObject": {"uid": "job-uid"},
        "message": "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true"});
    let State::Failed(inner) = verdict(NAME, &k, Some(&job), &[], &[event], now()) else {
        panic!("expected failure");
    };
    assert!(inner.contains("could not create a Pod"), "{inner}");
    assert!(inner.contains("violates PodSecurity"));
    let wrapped = wrap(&k, &inner);
    assert!(
        wrapped.starts_with("kubernetes startup preflight failed"),
        "{wrapped}"
    );
    assert!(wrapped.contains("root init container"));
    assert!(wrapped.contains("namespace \"agents\""));
}

#[test]
fn image_volume_mode_needs_success_and_fails_on_mount_errors() {
    let mut k = fixtures::settings();
    k.use_image_volumes = true;
    assert_eq!(
        verdict(NAME, &k, None, &[pending_pod()], &[], now()),
        State::Waiting
    );
    let done = json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}});
    assert_eq!(verdict(NAME, &k, None, &[done], &[], now()), State::Passed);
    let complete = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
    assert_eq!(
        verdict(NAME, &k, Some(&complete), &[], &[], now()),
        State::Passed
    );
    let mount = json!({"type": "Warning", "reason": "FailedMount", "involvedObject": {"uid": "pod-uid"},
        "message": "MountVolume.SetUp failed for volume \"preflight-image\": image volumes are not supported"});
    let State::Failed(inner) = verdict(NAME, &k, None, &[pending_pod()], &[mount], now()) else {
        panic!("expected failure");
    };
    assert!(inner.contains("failed to mount a volume"), "{inner}");
    let wrapped = wrap(&k, &inner);
    assert!(wrapped.contains("startup preflight failed"));
    assert!(wrapped.contains("image-volume support"));
    let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(
        verdict(NAME, &k, Some(&failed), &[], &[], now()),
        State::Failed(format!("startup preflight Job {NAME:?} failed"))
    );
    assert!(timeout_message(NAME, &k).contains("to complete or surface a failure"));
}

#[test]
fn an_unpullable_preflight_image_points_at_the_setting() {
    let k = fixtures::settings();
    let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending",
        "initContainerStatuses": [{"name": "root-init-preflight",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}});
    let State::Failed(inner) = verdict(NAME, &k, None, &[pod], &[], now()) else {
        panic!("expected failure");
    };
    let wrapped = wrap(&k, &inner);
    assert!(
        wrapped.contains("backend.kubernetes.preflight_image"),
        "{wrapped}"
    );
    assert!(wrapped.contains("busybox:1.36"));
    assert!(timeout_message(NAME, &k).contains("to create a Pod"));
}

#[test]
fn copy_readiness_mode_runs_a_native_sidecar_and_needs_completion() {
    let mut k = fixtures::settings();
    k.sidecar_copy_readiness = true;
    let job = preflight_job(NAME, WORKER, &k);
    let init = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["restartPolicy"], "Always");
    assert_eq!(init["securityContext"]["runAsUser"], 0);
    assert_eq!(
        verdict(NAME, &k, None, &[pending_pod()], &[], now()),
        State::Waiting
    );
    let done = json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}});
    assert_eq!(verdict(NAME, &k, None, &[done], &[], now()), State::Passed);
    assert!(timeout_message(NAME, &k).contains("to complete"));
    // Image volumes take precedence over copy readiness.
    k.use_image_volumes = true;
    let job = preflight_job(NAME, WORKER, &k);
    assert!(
        job["spec"]["template"]["spec"]
            .get("initContainers")
            .is_none()
    );
}
