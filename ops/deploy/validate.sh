#!/usr/bin/env bash
# Validate the deployment files offline (the validators come with the dev extras: pip install -e '.[dev]'):
#   - every YAML file: yamllint (syntax and style, .yamllint);
#   - compose.yaml: the Compose specification's JSON schema (check-jsonschema's vendored copy);
#   - k8s/ core objects (Deployments, Secret): the Kubernetes OpenAPI schemas of the version
#     kubernetes-validate bundles, strict (unknown fields are errors);
#   - k8s/keda-*.yaml: schemas/keda.json, the KEDA fields we use, transcribed from KEDA's docs
#     (KEDA's CRDs are not available offline).
# Not validated: that the images exist, that a cluster accepts them (no cluster here), the Dockerfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bin="$(dirname "$(command -v python3)")"
[ -x "$bin/yamllint" ] || bin="$(cd ../.. && pwd)/.venv/bin"
"$bin/yamllint" -c .yamllint compose.yaml k8s/
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
"$bin/kubernetes-validate" --strict --quiet k8s/scheduler.yaml k8s/worker.yaml k8s/secret.example.yaml
"$bin/check-jsonschema" --schemafile schemas/keda.json k8s/keda-auth.yaml k8s/keda-scaledobject.yaml
echo "deployment files valid"
