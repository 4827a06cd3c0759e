//! The `failure_reason` values a failed task is reported with.

use std::fmt;

macro_rules! failure_reasons {
    ($($variant:ident => $text:literal,)*) => {
        /// The `failure_reason` strings of the wire protocol; the server mirrors this list.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FailureReason { $($variant,)* }

        impl FailureReason {
            /// Every reason, in wire order (used to prime metrics).
            pub const ALL: &'static [FailureReason] = &[$(FailureReason::$variant,)*];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self { $(FailureReason::$variant => $text,)* }
            }
        }
    };
}

failure_reasons! {
    Unknown => "unknown",
    TaskTimeout => "task_timeout",
    TaskCancelled => "task_cancelled",
    GracefulShutdown => "graceful_shutdown",
    ImagePull => "image_pull",
    SidecarPrep => "sidecar_prep",
    ContainerCreate => "container_create",
    ContainerStart => "container_start",
    ContainerWait => "container_wait",
    ContainerExit => "container_exit",
    ContainerOom => "container_oom",
    WorkspaceSetup => "workspace_setup",
    SetupCommand => "setup_command",
    AgentInvocation => "agent_invocation",
    TeardownCommand => "teardown_command",
    DispatchCommand => "dispatch_command",
    DispatchTimeout => "dispatch_timeout",
    CancelCommand => "cancel_command",
    JobCreate => "job_create",
    JobWatch => "job_watch",
    JobFailed => "job_failed",
    Evicted => "evicted",
    PodWatch => "pod_watch",
    Unschedulable => "unschedulable",
    VolumeMount => "volume_mount",
    InitContainer => "init_container",
    InvalidImage => "invalid_image",
    ActiveDeadline => "active_deadline",
    Cleanup => "cleanup",
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
