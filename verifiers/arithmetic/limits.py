"""The checker's bounds: how much text, how many digits, how deep, how long."""

DEFAULT_TIMEOUT_MS = 2000
MAX_EXPONENT = 1000  # |n| in a^n; beyond it the claim is unknown
MAX_RESULT_BITS = 100_000  # ~30k digits: larger powers are not worth computing
MAX_ROOT_INDEX = 64
MAX_Z3_POWER = 64  # powers of irrational values are expanded into products for Z3
MAX_SIDE_TOKENS = 64  # how far left of an `=` a claim's left side may start
MAX_DEPTH = 64  # parser nesting (parentheses, signs, powers)
MAX_LISTED = 5  # claims named in a "correct" reason
