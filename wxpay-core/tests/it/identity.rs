//! Loading the merchant client certificate.

use wxpay_core::{ClientIdentity, Error, ReqwestTransport};

use crate::support::config;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/cert/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn pkcs12_with_the_mch_id_password_and_pem_pairs_load() {
    for file in ["modern.p12", "legacy.p12"] {
        let id = ClientIdentity::from_pkcs12(&data(file), "1900000109")
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(format!("{id:?}"), "ClientIdentity(***)");
        ReqwestTransport::new(&config(), Some(&id)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let pem = ClientIdentity::from_pem(&data("cert.pem"), &data("key.pem"));
    ReqwestTransport::new(&config(), Some(&pem)).unwrap();
}

#[test]
fn a_wrong_password_is_a_clear_error_without_the_password() {
    match ClientIdentity::from_pkcs12(&data("modern.p12"), "wrong-password-xyz") {
        Err(Error::Certificate(msg)) => assert!(!msg.contains("wrong-password-xyz"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ClientIdentity::from_pkcs12(b"not a p12", "x"),
        Err(Error::Certificate(_))
    ));
    // a certificate without its key cannot make an identity
    let broken = ClientIdentity::from_pem(&data("cert.pem"), b"");
    assert!(matches!(
        ReqwestTransport::new(&config(), Some(&broken)),
        Err(Error::Certificate(_))
    ));
}
