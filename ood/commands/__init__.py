"""One module per script: its command line (``build_parser``) and its work (``run``, from parsed arguments
to what the script reports). ``ood.api`` calls them from Python; the scripts at the repository's root
parse, call ``ood.api`` and print. Above ``ood.runtime``, below ``ood.api``."""
