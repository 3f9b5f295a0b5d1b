"""First-order logic: a FOLIO-notation parser (`fol`), Z3 entailment (`entailment`) and the formula
a step of a solution derives (`extract`)."""
