# API keys of the inference service (docs/security.md, "API keys"). The key-hash file is DKT_API_KEYS_FILE
# (default $(DKT_HOME)/secrets/api_keys.json, 0600, hashes only). With a Swarm stack running, a change rolls
# out at once (new content-named Docker secret, start-first rolling update); without one only the file changes.

## api-key: create an API key NAME=... (prints the key on its last line, once)
api-key: setup
	@test -n "$(NAME)" || { echo "usage: make api-key NAME=<name> (a-z, 0-9, _ . -)" >&2; exit 2; }
	@$(BIN)/dkt api-key create "$(NAME)"

## api-key-revoke: revoke the API key NAME=... (401 from then on, after the rolling update)
api-key-revoke: setup
	@test -n "$(NAME)" || { echo "usage: make api-key-revoke NAME=<name>" >&2; exit 2; }
	@$(BIN)/dkt api-key revoke "$(NAME)"

## api-key-rollout: roll the key file out to the running stack again (after a failed update)
api-key-rollout: setup
	@$(BIN)/dkt api-key rollout

## api-keys: list API key names with creation and revocation times (never the keys)
api-keys: setup
	@$(BIN)/dkt api-key list

.PHONY: api-key api-key-revoke api-key-rollout api-keys
