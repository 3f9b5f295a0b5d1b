"""First-order logic: a FOLIO-notation parser (`fol`) and Z3 entailment (`entailment`)."""
