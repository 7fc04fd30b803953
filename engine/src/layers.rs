//! The engine's layer order, checked: a module may use only the modules listed before it, so
//! imports point down and no two modules need each other. ARCHITECTURE.md explains the order.

/// Bottom first.
const LAYERS: [&str; 27] = [
    // Foundations.
    "error",
    "rng",
    "npy",
    "files",
    "frames",
    // The networks, and loading tensors into them.
    "model",
    "faces",
    "import",
    // FOMM's configs, gathering the networks' own.
    "config",
    // Data and pictures.
    "backend",
    "metrics",
    "render",
    "data",
    "augment",
    "loss",
    "evaluators",
    // Models on disk and run folders; model families, opening any model.
    "checkpoint",
    "family",
    // What is done with a model.
    "animate",
    "reference",
    "eval",
    "live",
    "stream",
    "train",
    "bench",
    "ablation",
    // The engine as a UI drives it.
    "worker",
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::LAYERS;

    /// `crate::name` paths of a file, outside its tests and its comments.
    fn crate_uses(text: &str) -> Vec<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut uses = Vec::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                uses.push(name);
            }
        }
        uses
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("engine sources").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn imports_point_down_the_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let layer = |name: &str| LAYERS.iter().position(|l| *l == name);
        let mut upward = Vec::new();
        for path in &all {
            let relative = path.strip_prefix(&src).expect("under src");
            let top = relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string())
                .unwrap_or_default();
            if matches!(top.as_str(), "lib" | "layers" | "test_support") {
                continue;
            }
            let own = layer(&top).unwrap_or_else(|| panic!("{top} is not in LAYERS: give it its place"));
            let text = std::fs::read_to_string(path).expect("source");
            for used in crate_uses(&text) {
                // The crate's re-exports at the root (Result, EngineError, burn) are foundations.
                let Some(theirs) = layer(&used) else { continue };
                if theirs > own {
                    upward.push(format!("{} uses crate::{used}", relative.display()));
                }
            }
        }
        assert!(upward.is_empty(), "imports pointing up a layer:\n{}", upward.join("\n"));
    }
}
