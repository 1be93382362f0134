use pyo3::prelude::*;

#[pymodule]
fn _hotpath(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
