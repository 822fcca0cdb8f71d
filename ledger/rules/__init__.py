"""The ledger's domain rules: pure functions of plain data (who may do what, billing months, plan
coverage, carrying values forward, month rollover), shared by the commands and the projections."""
