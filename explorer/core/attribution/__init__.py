"""Attribution methods, branch evidence, faithfulness curves and sanity checks."""
