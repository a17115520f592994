"""Other investors' published exclusions: name-only entries a data steward resolves to issuers
(exact and fuzzy name match, a confidence, four eyes) before they can affect a verdict."""
