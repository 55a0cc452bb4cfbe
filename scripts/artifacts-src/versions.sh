# Pinned versions for scripts/build-artifacts and scripts/build-images (sourced, not run).
# Pulumi must match the Python packages pinned in pyproject.toml:
#   pulumi==$PULUMI_VERSION, pulumi-kubernetes==$PULUMI_KUBERNETES_VERSION
PULUMI_VERSION=3.260.0
PULUMI_KUBERNETES_VERSION=4.25.0
# The provider module is served only at this commit (one day before the v4.25.0 tag).
PULUMI_KUBERNETES_MODULE=v4.0.0-20260115033456-f47bc2d6f199
KUBERNETES_VERSION=1.37.2
ETCD_VERSION=3.7.3
COREDNS_VERSION=1.15.0
CONTAINERD_VERSION=2.4.2
# images: pause is kubernetes' build/pause/linux/pause.c (TAG in its Makefile) of KUBERNETES_VERSION
PAUSE_VERSION=3.10.2
ECHO_VERSION=0.2.0
IMAGE_PREFIX=hzcloud.local
