# TEST FIXTURE: a "broken release" = a good image whose /readyz never turns ready (fails its healthcheck).
ARG GOOD_IMAGE
FROM ${GOOD_IMAGE}
ENV DKT_TESTSVC_NEVER_READY=1
