#!/usr/bin/env bash
# Runs one real docker-backend task with the worker inside its image, talking to the engine
# through the mounted socket (the README's image route). The task image and the agent sidecar are
# local: TASK_IMAGE must have /bin/sh; AGENT_TAG is built here FROM scratch with a stand-in
# /entrypoint.sh and removed afterwards.
# Usage: image-task-test.sh WORKER_IMAGE TASK_IMAGE AGENT_TAG
set -euo pipefail
worker_image=$1 task_image=$2 agent_tag=$3
work=$(mktemp -d)
# The worker caches sidecar volumes by image (named after the tag, `/` and `:` as `-`): this test's
# agent image is gone afterwards, so its volumes go too (CI checks nothing is left behind).
volume_prefix=${agent_tag//[\/:]/-}
cleanup() {
  docker volume ls -q --filter "name=$volume_prefix" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  docker rmi -f "$agent_tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$(dirname "$0")/.."

mkdir -p "$work/agent"
cat >"$work/agent/entrypoint.sh" <<'AGENT'
#!/bin/sh
echo "stand-in agent on Debian $(cat /etc/debian_version): $*"
AGENT
chmod 755 "$work/agent/entrypoint.sh"
printf 'FROM scratch\nLABEL oz-test=1\nCOPY entrypoint.sh /entrypoint.sh\n' >"$work/agent/Dockerfile"
docker build -q -t "$agent_tag" "$work/agent" >/dev/null

python3 - "$task_image" "$agent_tag" >"$work/task.json" <<'PY'
import json, sys
a = json.load(open("tests/support/tasks/hello.json"))
a["data"]["task_id"] = a["data"]["task"]["id"] = "image-task-1"
a["data"]["docker_image"], a["data"]["sidecar_image"] = sys.argv[1], sys.argv[2]
print(json.dumps(a))
PY
printf 'worker_id: image-test\nbackend:\n  docker:\n    image_pull_policy: Never\n' >"$work/config.yaml"
# The worker runs as uid 10001 in its image: the mounted files must be readable by it.
chmod 755 "$work"
chmod 644 "$work/task.json" "$work/config.yaml"

sock=/var/run/docker.sock
out=$(docker run --rm -v "$sock:$sock" --group-add "$(stat -c %g "$sock")" \
  -v "$work:/work:ro" "$worker_image" run-once --config-file /work/config.yaml --task /work/task.json 2>"$work/stderr") \
  || { cat "$work/stderr" >&2; echo "$out" >&2; echo "run-once failed inside $worker_image" >&2; exit 1; }
grep -q '"type":"task_completed"' <<<"$out" || { cat "$work/stderr" >&2; echo "$out" >&2; exit 1; }
grep -q 'stand-in agent on Debian' "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
echo "docker-backend task ran from inside $worker_image"
