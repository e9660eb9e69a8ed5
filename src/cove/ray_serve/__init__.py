"""cove's own llama.cpp engine as a Ray Serve deployment (the optional extra `cove[ray]`).

`cove ray serve MODEL --replicas N` deploys it (app.py) with a request router that keeps a
conversation on the replica holding its prompt cache (router.py); the cove on the user's machine
then uses it as a remote engine: `FROM openai+http://HOST:PORT/v1#MODEL`. Nothing here is
imported unless Ray is asked for.
"""
