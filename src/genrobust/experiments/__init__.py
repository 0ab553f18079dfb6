"""The paper's studies, reproducible from the CLI: `genrobust reproduce ...`."""
