"""``loader webhook``: a Kubernetes mutating admission webhook that injects the agent into pods.

A pod annotated ``loader.dev/inject: "true"`` gets a memory-backed volume, an init container
(``loader render --once``) that fills it before the app starts, and the ``loader agent`` sidecar
that keeps it fresh. :mod:`.inject` builds the JSONPatch (pure), :mod:`.server` serves
``POST /mutate`` over TLS, :mod:`.settings` holds the ``LOADER_WEBHOOK_*`` settings.

It reads no store and no Kubernetes API: everything it needs is in the AdmissionReview and its
own settings, and it never sees a secret value or a token (only the name of the token Secret).
"""
