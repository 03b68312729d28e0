#!/bin/sh
# An example agent for starforge: it stands in for `claude` so the daemon can be tried anywhere.
# It receives the prompt as its last argument and the STARFORGE_* variables, "works" for a
# moment and succeeds. Set EXAMPLE_AGENT_SECONDS to change how long it works.
for last; do :; done
echo "[$STARFORGE_AGENT_ID] attempt $STARFORGE_ATTEMPT, ticket ${STARFORGE_TICKET:-none}, in $(pwd)"
echo "[$STARFORGE_AGENT_ID] prompt:"
printf '%s\n' "$last" | sed 's/^/    /'
sleep "${EXAMPLE_AGENT_SECONDS:-1}"
echo "[$STARFORGE_AGENT_ID] done"
