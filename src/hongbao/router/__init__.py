"""The router: a stateless process that serves the ledger services by forwarding each
request to its shard's leader (``hongbao router run``).

Its routing rules are the SDK's (:mod:`hongbao.client.routing`); what it adds is
forwarding without re-encoding (:mod:`.wire`, :mod:`.links`), Batch splitting
(:mod:`.forward`), coalescing of concurrent single requests (:mod:`.coalesce`), and
following the cluster state (:mod:`.state`), all wired by :mod:`.server`.

During a drain. Once the cluster state says a region is ``draining`` (read every
``state_poll_ms``), the router never *guesses* a node there (after a failure, or with no
leader known) and never sends a ``stale_ok`` read there. One case still sends work to the
draining region: a shard whose leader the router knows is still there, because the
drain's leadership transfer has not landed yet. That leader is the only node that can
serve a write at that moment; sending the request elsewhere would only bounce back as
NOT_LEADER naming it, or fail the request, which is what a drain must not do. So the
router sends it to the leader, and the leader answers NOT_LEADER with the new leader's id
as soon as the transfer lands (each transfer is bounded by an election timeout); the
router follows that hint at once, with the same request bytes, so the same request id.
"""
