"""The bad-input corpus: case builders, one module per command (or per kind of file several
commands read), and the runner that puts every case through the real CLI.

A case is data (`corpus.Case`: the command line, and what it must give); `tests/test_bad_inputs.py`
builds the corpus once per module, runs it in a few fresh interpreters and checks each case.
"""
