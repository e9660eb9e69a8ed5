"""A Ray Serve request router that keeps a conversation on the replica holding its prompt cache.

Ray Serve lets a deployment choose its replica per request (`ray.serve.request_router.
RequestRouter`, public alpha API; tested on Ray 2.60). The ingress (app.py) passes each request's
conversation key (the hash cove's remote engine makes of its first messages) as the `affinity`
keyword; this router ranks that conversation's replica first, then the others by their cached
queue length, and Serve's own machinery probes the ranks in order: a full home replica hands the
request to the least busy one, which becomes its new home.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, ReplicaID, RequestRouter, RunningReplica

#: Conversations remembered, least recently used forgotten first.
AFFINITY_SIZE = 4096


class ConversationRouter(FIFOMixin, RequestRouter):
    """Conversation affinity over least-busy routing."""

    def initialize_state(self, **kwargs: Any) -> None:
        self._homes: OrderedDict[str, ReplicaID] = OrderedDict()
        self.affinity_size = int(kwargs.get("affinity_size", AFFINITY_SIZE))

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        # Shuffled first, so replicas equally busy take new conversations in turn.
        by_load = sorted(random.sample(candidate_replicas, len(candidate_replicas)), key=self._queue_length)
        home = self._homes.get(key) if (key := _affinity(pending_request)) else None
        first = [r for r in by_load if r.replica_id == home]
        if first:
            return [first, [r for r in by_load if r.replica_id != home]]
        return [by_load]

    def _queue_length(self, replica: RunningReplica) -> int:
        cached = self._replica_queue_len_cache.get(replica.replica_id)
        return int(cached) if cached is not None else 0

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        key = _affinity(pending_request)
        if key:
            self._homes[key] = replica_id
            self._homes.move_to_end(key)
            while len(self._homes) > self.affinity_size:
                self._homes.popitem(last=False)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        for key in [k for k, home in self._homes.items() if home == replica_id]:
            del self._homes[key]


def _affinity(pending_request: PendingRequest | None) -> str | None:
    if pending_request is None:
        return None
    key = pending_request.kwargs.get("affinity")
    return key if isinstance(key, str) and key else None
