//! The worked examples of RFC 5849, byte for byte.

use bytes::Bytes;
use http::{header::CONTENT_TYPE, Request};
use tower_alf::oauth1::{
    signature::{base_string_uri, normalize_parameters},
    ClientCredentials, Signer, TemporaryCredentials, TokenCredentials, Verifier,
};

/// §1.2: the client credentials of printer.example.com at
/// photos.example.net.
fn printer() -> Signer {
    Signer::new(ClientCredentials::new(
        "dpf43f3p2l4k3l03",
        "kd94hf93k423kf44",
    ))
    .realm("Photos")
    .version(false)
}

fn authorization(request: &Request<Bytes>) -> &str {
    request.headers()["authorization"].to_str().unwrap()
}

#[test]
fn section_1_2_temporary_credentials_request() {
    let request = Request::post("https://photos.example.net/initiate")
        .body(Bytes::new())
        .unwrap();
    let signed = printer()
        .callback("http://printer.example.com/ready")
        .sign_with(request, "wIjqoS", 137131200)
        .unwrap();
    assert_eq!(
        authorization(&signed),
        "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
         oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"137131200\", \
         oauth_nonce=\"wIjqoS\", oauth_callback=\"http%3A%2F%2Fprinter.example.com%2Fready\", \
         oauth_signature=\"74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D\""
    );
}

#[test]
fn section_1_2_token_credentials_request() {
    let temporary = TemporaryCredentials::new("hh5s93j4hdidpola", "hdhd0244k9j7ao03");
    let request = Request::post("https://photos.example.net/token")
        .body(Bytes::new())
        .unwrap();
    let signed = printer()
        .token(TokenCredentials::new(temporary.token(), temporary.secret()))
        .verifier(Verifier::new("hfdp7dh39dks9884"))
        .sign_with(request, "walatlh", 137131201)
        .unwrap();
    assert_eq!(
        authorization(&signed),
        "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
         oauth_token=\"hh5s93j4hdidpola\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_timestamp=\"137131201\", oauth_nonce=\"walatlh\", \
         oauth_verifier=\"hfdp7dh39dks9884\", \
         oauth_signature=\"gKgrFCywp7rO0OXSjdot%2FIHF7IU%3D\""
    );
}

#[test]
fn section_1_2_protected_resource_request() {
    let request = Request::get("http://photos.example.net/photos?file=vacation.jpg&size=original")
        .body(Bytes::new())
        .unwrap();
    let (signed, base_string) = printer()
        .token(TokenCredentials::new(
            "nnch734d00sl2jdk",
            "pfkkdhi9sl3r4s00",
        ))
        .sign_with_base_string(request, "chapoH", 137131202)
        .unwrap();
    assert_eq!(
        base_string,
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26\
         oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26\
         oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26\
         oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
    );
    assert_eq!(
        authorization(&signed),
        "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
         oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\", \
         oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\""
    );
}

/// §3.4.1.1's request: query and form parameters, a repeated name, `+`
/// for a space, an encoded `=`, empty values.
fn section_3_4_1_request() -> Request<Bytes> {
    Request::post("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Bytes::from_static(b"c2&a3=2+q"))
        .unwrap()
}

/// §3.1's credentials, which sign §3.4.1.1's request.
fn section_3_1_signer() -> Signer {
    Signer::new(ClientCredentials::new("9djdj82h48djs9d2", "j49sk3j29djd"))
        .token(TokenCredentials::new("kkk9d7dh3k39sjv7", "dh893hdasih9"))
        .realm("Example")
        .version(false)
}

#[test]
fn section_3_4_1_1_signature_base_string() {
    let (_, base_string) = section_3_1_signer()
        .sign_with_base_string(section_3_4_1_request(), "7d8f3e4a", 137131201)
        .unwrap();
    assert_eq!(
        base_string,
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
         %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
         key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
         ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
         9d7dh3k39sjv7"
    );
}

#[test]
fn section_3_4_1_1_signature() {
    // The RFC prints no real signature for this request (§3.4.1.1 shows a
    // placeholder); this is HMAC-SHA1 of the base string above with §3.1's
    // secrets, as other implementations compute it too.
    let signed = section_3_1_signer()
        .sign_with(section_3_4_1_request(), "7d8f3e4a", 137131201)
        .unwrap();
    assert!(authorization(&signed)
        .ends_with("oauth_signature=\"r6%2FTJjbCOr97%2F%2BUU0NsvSne7s5g%3D\""));
}

#[test]
fn section_3_4_1_2_base_string_uris() {
    for (uri, expected) in [
        (
            "http://EXAMPLE.COM:80/r%20v/X?id=123",
            "http://example.com/r%20v/X",
        ),
        (
            "https://www.example.net:8080/?q=1",
            "https://www.example.net:8080/",
        ),
    ] {
        assert_eq!(base_string_uri(&uri.parse().unwrap()).unwrap(), expected);
    }
}

#[test]
fn section_3_4_1_3_2_normalized_parameters() {
    let params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ];
    assert_eq!(
        normalize_parameters(params),
        "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj\
         dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1\
         &oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
    );
}
