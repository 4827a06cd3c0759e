//! The Docker client against the real engine on this machine (`/var/run/docker.sock` unless the
//! environment says otherwise). These tests fail, never skip, when the engine is unreachable.
//! Images are built here (see `support/docker_images.rs`): the engine has none and no registry
//! is reachable.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use oz_agent_worker::docker::frames::demux_all;
use oz_agent_worker::docker::{
    Abort, AttachOptions, Client, ContainerConfig, Credential, DockerError, Endpoint, HostConfig,
    ImageRef, KillOutcome, LogsOptions, MAX_API_VERSION, MIN_API_VERSION, Platform, RegistryAuth,
    Removal, StartOutcome, StopOutcome, StreamKind, WaitCondition,
};
use oz_agent_worker::settings::Secret;

use crate::support::docker_images::{
    FakeRegistry, HELLO, Resources, Tar, docker, docker_arch, import_tool_image, rootfs_tar, unique,
};

/// Upper bound for anything a test waits on in another thread.
const BOUND: Duration = Duration::from_secs(120);

fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [("oz-test".to_string(), "1".to_string())].into();
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    labels
}

fn tool_config(image: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        image: image.to_string(),
        cmd: Some(args.iter().map(|a| a.to_string()).collect()),
        labels: labels(&[]),
        ..Default::default()
    }
}

/// Creates a container (registered for cleanup) and returns its id.
fn create(client: &Client, res: &Resources, config: &ContainerConfig) -> String {
    let created = client
        .create_container(Some(&unique("ctr")), config)
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    res.container(&created.id)
}

/// Follows the logs until `needle` appears (so the process is known to be past its setup).
fn wait_for_output(client: &Client, id: &str, needle: &str) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut stream = client.container_logs(id, &options).unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match stream.next_chunk().unwrap() {
            Some(chunk) => seen.extend_from_slice(&chunk.data),
            None => panic!("log stream of {id} ended before {needle:?}: {seen:?}"),
        }
    }
}

#[test]
fn negotiates_with_the_real_engine() {
    let client = docker();
    let version = client.api_version().unwrap();
    assert!(
        version >= MIN_API_VERSION && version <= MAX_API_VERSION,
        "{version}"
    );
    assert!(client.ping().unwrap().is_some());
    let info = client.version().unwrap();
    let platform = Platform {
        os: info.os,
        arch: info.arch,
    };
    assert!(platform.is_supported(), "{platform}");

    let mut fresh = Client::from_env(&|k| std::env::var(k).ok()).unwrap();
    assert_eq!(fresh.api_version(), None);
    let daemon = fresh.negotiate().unwrap();
    assert_eq!(daemon.platform, platform);
    assert_eq!(
        daemon.api_version,
        daemon.daemon_api_version.min(MAX_API_VERSION)
    );
    assert_eq!(fresh.api_version(), Some(daemon.api_version));
}

#[test]
fn a_missing_socket_is_one_clear_line() {
    let path = std::env::temp_dir()
        .join(unique("nosock"))
        .join("docker.sock");
    let mut client = Client::new(Endpoint::unix(&path));
    let err = client.negotiate().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no Docker socket at {}: is the Docker daemon running? set DOCKER_HOST to its address",
            path.display()
        )
    );
}

#[test]
fn container_runs_prints_and_exits_with_its_code() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);
    let inspected = client.inspect_image(&image).unwrap().unwrap();
    assert_eq!(
        inspected.platform().to_string(),
        format!("linux/{}", docker_arch())
    );

    let id = create(
        &client,
        &res,
        &tool_config(&image, &["print", "to-stdout", "to-stderr", "7"]),
    );
    let before = client.inspect_container(&id).unwrap().unwrap();
    assert_eq!(
        (before.state.status.as_str(), before.state.running),
        ("created", false)
    );
    assert_eq!(before.labels.get("oz-test").map(String::as_str), Some("1"));

    // Registered before start, so the exit cannot be missed.
    let waiter = client.wait_container(&id, WaitCondition::NextExit).unwrap();
    assert_eq!(client.start_container(&id).unwrap(), StartOutcome::Started);
    let exit = waiter.wait().unwrap();
    assert_eq!((exit.status_code, exit.error), (7, None));

    let after = client.inspect_container(&id).unwrap().unwrap();
    assert_eq!(after.state.exit_code, 7);
    assert!(!after.state.running && !after.state.oom_killed);

    let options = LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let (out, err, truncated) = client
        .container_logs(&id, &options)
        .unwrap()
        .collect(1 << 20)
        .unwrap();
    assert_eq!(
        (out.as_slice(), err.as_slice(), truncated),
        (&b"to-stdout\n"[..], &b"to-stderr\n"[..], false)
    );
    // Following the logs of an exited container returns what there is, then ends.
    let follow = LogsOptions {
        follow: true,
        ..options.clone()
    };
    let (out, _, _) = client
        .container_logs(&id, &follow)
        .unwrap()
        .collect(4)
        .unwrap();
    assert_eq!(out, b"to-s");
    let only_err = LogsOptions {
        stderr: true,
        ..Default::default()
    };
    let (out, err, _) = client
        .container_logs(&id, &only_err)
        .unwrap()
        .collect(1 << 20)
        .unwrap();
    assert_eq!((out.len(), err.as_slice()), (0, &b"to-stderr\n"[..]));

    assert_eq!(
        client.remove_container(&id, false, true).unwrap(),
        Removal::Removed
    );
    assert_eq!(
        client.remove_container(&id, false, true).unwrap(),
        Removal::NotFound
    );
    assert_eq!(client.inspect_container(&id).unwrap(), None);
}

#[test]
fn kill_and_stop_are_answers_not_errors() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);

    let killed = create(&client, &res, &tool_config(&image, &["sleep"]));
    assert_eq!(
        client.start_container(&killed).unwrap(),
        StartOutcome::Started
    );
    assert_eq!(
        client.start_container(&killed).unwrap(),
        StartOutcome::AlreadyRunning
    );
    assert!(
        client
            .inspect_container(&killed)
            .unwrap()
            .unwrap()
            .state
            .running
    );
    assert_eq!(
        client.kill_container(&killed, "SIGKILL").unwrap(),
        KillOutcome::Killed
    );
    let exit = client
        .wait_container(&killed, WaitCondition::NotRunning)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(exit.status_code, 137);
    assert_eq!(
        client.kill_container(&killed, "SIGKILL").unwrap(),
        KillOutcome::NotRunning
    );

    let stopped = create(&client, &res, &tool_config(&image, &["sleep"]));
    client.start_container(&stopped).unwrap();
    wait_for_output(&client, &stopped, "sleeping");
    // The tool exits 42 on SIGTERM: the stop delivered TERM, not the KILL after the grace.
    let outcome = client
        .stop_container(&stopped, Duration::from_secs(60))
        .unwrap();
    assert_eq!(outcome, StopOutcome::Stopped);
    assert_eq!(
        client
            .inspect_container(&stopped)
            .unwrap()
            .unwrap()
            .state
            .exit_code,
        42
    );
    assert_eq!(
        client
            .stop_container(&stopped, Duration::from_secs(1))
            .unwrap(),
        StopOutcome::AlreadyStopped
    );

    let ghost = unique("ghost");
    assert_eq!(
        client
            .stop_container(&ghost, Duration::from_secs(1))
            .unwrap(),
        StopOutcome::NotFound
    );
    assert_eq!(
        client.kill_container(&ghost, "SIGKILL").unwrap(),
        KillOutcome::NotFound
    );
    assert_eq!(
        client.remove_container(&ghost, true, true).unwrap(),
        Removal::NotFound
    );
}

#[test]
fn missing_objects_and_conflicts_are_statuses() {
    let client = docker();
    let res = Resources::new(&client);
    let ghost = unique("ghost");
    assert_eq!(client.inspect_container(&ghost).unwrap(), None);
    assert_eq!(
        client.inspect_image(&format!("oz-test/{ghost}:1")).unwrap(),
        None
    );
    assert_eq!(client.inspect_volume(&ghost).unwrap(), None);
    for err in [
        client.start_container(&ghost).map(drop).unwrap_err(),
        client
            .wait_container(&ghost, WaitCondition::NotRunning)
            .map(drop)
            .unwrap_err(),
        client.export_container(&ghost).map(drop).unwrap_err(),
        client
            .container_logs(
                &ghost,
                &LogsOptions {
                    stdout: true,
                    ..Default::default()
                },
            )
            .map(drop)
            .unwrap_err(),
    ] {
        assert_eq!(err.status(), Some(404), "{err}");
        assert!(err.to_string().contains("No such container"), "{err}");
    }

    let image = import_tool_image(&client, &res);
    let name = unique("named");
    let first = client
        .create_container(Some(&name), &tool_config(&image, &["sleep"]))
        .unwrap();
    res.container(&first.id);
    let err = client
        .create_container(Some(&name), &tool_config(&image, &["sleep"]))
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.is_definitive());
    assert!(err.to_string().contains("is already in use"), "{err}");
}

#[test]
fn labels_filter_the_container_list() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);
    let run = unique("run");
    let mut mine = Vec::new();
    for _ in 0..2 {
        let mut config = tool_config(&image, &["sleep"]);
        config.labels.insert("oz-test-run".into(), run.clone());
        mine.push(create(&client, &res, &config));
    }
    let mut other = tool_config(&image, &["sleep"]);
    other
        .labels
        .insert("oz-test-run".into(), format!("{run}-other"));
    create(&client, &res, &other);

    let filter = format!("oz-test-run={run}");
    let listed = client
        .list_containers(true, &[&filter, "oz-test=1"])
        .unwrap();
    let mut ids: Vec<String> = listed.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    mine.sort();
    assert_eq!(ids, mine);
    assert!(
        listed
            .iter()
            .all(|c| c.state == "created" && c.labels["oz-test"] == "1")
    );
    // Not running: only `all` lists them.
    assert!(
        client
            .list_containers(false, &[&filter])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn volumes_are_created_inspected_and_removed() {
    let client = docker();
    let res = Resources::new(&client);
    let name = res.volume(&unique("vol"));
    let created = client
        .create_volume(&name, &labels(&[("purpose", "test")]))
        .unwrap();
    assert_eq!(created.name, name);
    let inspected = client.inspect_volume(&name).unwrap().unwrap();
    assert_eq!(
        inspected.labels.get("purpose").map(String::as_str),
        Some("test")
    );
    assert_eq!(inspected.driver, "local");
    // Creating again is idempotent.
    assert_eq!(
        client.create_volume(&name, &labels(&[])).unwrap().name,
        name
    );

    // In use: removal is refused with 409 until the container is gone.
    let image = import_tool_image(&client, &res);
    let mut config = tool_config(&image, &["sleep"]);
    config.host_config.binds = vec![format!("{name}:/target")];
    let id = create(&client, &res, &config);
    let err = client.remove_volume(&name, false).unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    client.remove_container(&id, true, false).unwrap();

    assert_eq!(
        client.remove_volume(&name, false).unwrap(),
        Removal::Removed
    );
    assert_eq!(
        client.remove_volume(&name, false).unwrap(),
        Removal::NotFound
    );
    assert_eq!(client.inspect_volume(&name).unwrap(), None);
}

#[test]
fn export_streams_into_put_archive_of_another_containers_volume() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);
    let volume = res.volume(&unique("vol"));
    client.create_volume(&volume, &labels(&[])).unwrap();

    // Source: never started. Target: never started either; the daemon mounts its volume for the copy.
    let source = create(&client, &res, &tool_config(&image, &["sleep"]));
    let mut target_config = tool_config(&image, &["sleep"]);
    target_config.host_config.binds = vec![format!("{volume}:/target")];
    let target = create(&client, &res, &target_config);

    let mut export = client.export_container(&source).unwrap();
    client.put_archive(&target, "/target", &mut export).unwrap();

    let mut reader_config = tool_config(&image, &["cat-file", "/target/data/hello.txt"]);
    reader_config.host_config.binds = vec![format!("{volume}:/target:ro")];
    let reader = create(&client, &res, &reader_config);
    let waiter = client
        .wait_container(&reader, WaitCondition::NextExit)
        .unwrap();
    client.start_container(&reader).unwrap();
    assert_eq!(waiter.wait().unwrap().status_code, 0);
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let (out, err, _) = client
        .container_logs(&reader, &options)
        .unwrap()
        .collect(1 << 20)
        .unwrap();
    assert_eq!((out.as_slice(), err.as_slice()), (HELLO, &b""[..]));
}

#[test]
fn put_archive_to_a_missing_container_reports_the_daemons_answer() {
    let client = docker();
    // Big enough that the daemon hangs up before the upload ends.
    let big = Tar::new().file("big", 0o644, &vec![7u8; 8 << 20]).finish();
    let err = client
        .put_archive(&unique("ghost"), "/", &mut big.as_slice())
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[test]
fn attach_streams_stdin_in_and_output_out() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);
    let config = ContainerConfig {
        open_stdin: true,
        stdin_once: true,
        attach_stdin: true,
        attach_stdout: true,
        attach_stderr: true,
        ..tool_config(&image, &["cat"])
    };
    let id = create(&client, &res, &config);
    let options = AttachOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        logs: false,
    };
    let mut attached = client.attach_container(&id, options).unwrap();
    let waiter = client.wait_container(&id, WaitCondition::NextExit).unwrap();
    client.start_container(&id).unwrap();
    // Small enough to sit in socket buffers while we write before reading.
    let input: Vec<u8> = (0..2000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    attached.write_all(&input).unwrap();
    attached.close_stdin().unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut attached, &mut raw).unwrap();
    let streams = demux_all(&raw).unwrap();
    assert_eq!(streams, vec![(StreamKind::Stdout, input)]);
    assert_eq!(waiter.wait().unwrap().status_code, 0);
}

#[test]
fn abort_ends_a_blocked_wait_from_another_thread() {
    let client = docker();
    let res = Resources::new(&client);
    let image = import_tool_image(&client, &res);
    let id = create(&client, &res, &tool_config(&image, &["sleep"]));
    client.start_container(&id).unwrap();

    let abort = Abort::new();
    let abortable = client.with_abort(abort.clone());
    let waiter = abortable
        .wait_container(&id, WaitCondition::NotRunning)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("blocked-wait".into())
        .spawn(move || {
            let _ = tx.send(waiter.wait());
        })
        .unwrap();
    abort.abort();
    let result = rx
        .recv_timeout(BOUND)
        .expect("the wait did not return after abort");
    assert!(result.as_ref().unwrap_err().is_aborted(), "{result:?}");
    // Later calls through the aborted client fail at once; the container is untouched.
    assert!(abortable.ping().unwrap_err().is_aborted());
    assert!(
        client
            .inspect_container(&id)
            .unwrap()
            .unwrap()
            .state
            .running
    );

    // A following log stream is ended the same way.
    let abort = Abort::new();
    let abortable = client.with_abort(abort.clone());
    let options = LogsOptions {
        follow: true,
        stdout: true,
        ..Default::default()
    };
    let mut stream = abortable.container_logs(&id, &options).unwrap();
    let first = stream.next_chunk().unwrap().unwrap();
    assert_eq!(
        (first.stream, first.data.as_slice()),
        (StreamKind::Stdout, &b"sleeping\n"[..])
    );
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("blocked-logs".into())
        .spawn(move || {
            let _ = tx.send(stream.next_chunk().map(|c| c.is_some()));
        })
        .unwrap();
    abort.abort();
    let result = rx
        .recv_timeout(BOUND)
        .expect("the log stream did not return after abort");
    assert!(result.unwrap_err().is_aborted());
    client.kill_container(&id, "SIGKILL").unwrap();
}

#[test]
fn pull_from_an_unreachable_registry_fails_with_a_clear_error() {
    let client = docker();
    let image = ImageRef::parse(&format!("127.0.0.1:1/oz-test/{}:1", unique("nope"))).unwrap();
    let platform = Platform {
        os: "linux".into(),
        arch: docker_arch().into(),
    };
    let err = client
        .pull_image(&image, Some(&platform), None, &mut |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DockerError::Pull { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("failed to pull image {image}: ")),
        "{msg}"
    );
    assert!(msg.contains("connection refused"), "{msg}");
}

#[test]
fn pull_streams_progress_and_sends_registry_auth() {
    let client = docker();
    let res = Resources::new(&client);
    let registry = FakeRegistry::start(docker_arch(), Some(("oz-user", "oz-pa:ss")));
    let reference = res.image(&registry.image_ref());
    let image = ImageRef::parse(&reference).unwrap();
    let platform = Platform {
        os: "linux".into(),
        arch: docker_arch().into(),
    };

    // Anonymous: the registry's 401 becomes a pull error.
    let err = client
        .pull_image(&image, Some(&platform), None, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, DockerError::Pull { .. }), "{err}");

    let auth = RegistryAuth {
        server_address: image.auth_key().to_string(),
        credential: Credential::Password {
            username: "oz-user".into(),
            password: Secret::new("oz-pa:ss"),
        },
    };
    let mut statuses = Vec::new();
    client
        .pull_image(&image, Some(&platform), Some(&auth), &mut |p| {
            statuses.push(p.status.clone())
        })
        .unwrap_or_else(|e| panic!("pull from the fake registry failed: {e}"));
    assert!(
        statuses.iter().any(|s| s == "Pull complete"),
        "{statuses:?}"
    );
    assert!(
        statuses.last().unwrap().contains("Downloaded newer image"),
        "{statuses:?}"
    );
    let expected = format!(
        "Basic {}",
        oz_agent_worker::docker::base64::encode(b"oz-user:oz-pa:ss")
    );
    let requests = registry.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.authorization.as_deref() == Some(expected.as_str())),
        "{requests:?}"
    );

    let inspected = client.inspect_image(&reference).unwrap().unwrap();
    assert_eq!(inspected.digest(), registry.manifest_digest());
    assert_eq!(inspected.platform(), platform);
    assert_eq!(
        client.remove_image(&reference, true).unwrap(),
        Removal::Removed
    );
    assert_eq!(
        client.remove_image(&reference, true).unwrap(),
        Removal::NotFound
    );
}

#[test]
fn limits_env_and_working_dir_are_applied() {
    let client = docker();
    let res = Resources::new(&client);
    assert!(
        rootfs_tar().len() > 64 * 1024,
        "the import must span several upload chunks"
    );
    let image = import_tool_image(&client, &res);
    let limits = HostConfig {
        nano_cpus: Some(500_000_000),
        memory: Some(64 << 20),
        memory_swap: Some(64 << 20),
        ..Default::default()
    };
    let run = |args: &[&str]| {
        let mut config = tool_config(&image, args);
        config.host_config = limits.clone();
        config.env = vec!["OZ_TEST_VALUE=from env".into()];
        config.working_dir = Some("/data".into());
        let id = create(&client, &res, &config);
        let waiter = client.wait_container(&id, WaitCondition::NextExit).unwrap();
        client.start_container(&id).unwrap();
        assert_eq!(waiter.wait().unwrap().status_code, 0, "{args:?}");
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let (out, err, _) = client
            .container_logs(&id, &options)
            .unwrap()
            .collect(1024)
            .unwrap();
        assert_eq!(err, b"", "{args:?}");
        (id, out)
    };
    let (id, out) = run(&["cat-file", "hello.txt"]);
    assert_eq!(out, HELLO);
    let inspected = client.inspect_container(&id).unwrap().unwrap();
    assert_eq!(
        (
            inspected.host_config.nano_cpus,
            inspected.host_config.memory,
            inspected.host_config.memory_swap
        ),
        (Some(500_000_000), Some(64 << 20), Some(64 << 20))
    );
    let (_, out) = run(&["getenv", "OZ_TEST_VALUE"]);
    assert_eq!(out, b"from env\n");
}
