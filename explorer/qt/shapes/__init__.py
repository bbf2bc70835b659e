"""The paper's tables, compare and factorisation windows."""
