# TEST FIXTURE: "broken releases" built from a good test image (tests/docker/testsvc):
#   NEVER_READY=1    /readyz never turns ready (fails its healthcheck: Swarm rolls back)
#   PREDICT_FAILS=1  healthy and reports its version, but POST /predict answers 500 (the smoke test catches it)
ARG GOOD_IMAGE
FROM ${GOOD_IMAGE}
ARG NEVER_READY=1
ARG PREDICT_FAILS=0
ENV DKT_TESTSVC_NEVER_READY=${NEVER_READY} DKT_TESTSVC_PREDICT_FAILS=${PREDICT_FAILS}
