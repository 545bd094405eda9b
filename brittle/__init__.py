"""brittle: what makes LLM unlearning brittle?

The library behind the root-level scripts, one module per concern (the README's "Developing"
section lists them). The entry points for a newcomer: ``steps`` (the step registry: every step's
script, folder, files, columns, code and test), ``capture`` (the one hook API and numbering for
hidden states), ``report_numbers`` (how every report number is formed), ``errors`` (the one error
type a user sees).
"""
