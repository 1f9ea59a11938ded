//! The X-Ray endpoint URL the daemon calls, worked out once at startup.
//!
//! In: the region, the configured endpoint (`--endpoint` or the config file's `Endpoint`), and
//! the SDK configuration's FIPS, dual-stack and endpoint-URL settings (`AWS_USE_FIPS_ENDPOINT`,
//! `AWS_USE_DUALSTACK_ENDPOINT`, `AWS_ENDPOINT_URL(_XRAY)` or the profile, as `aws-config`
//! read them). Out: the URL without a trailing `/`, the same one the SDK's own resolver picks,
//! for the banner and for the sampling proxy (which signs and sends outside the SDK client).

use aws_config::{Region, SdkConfig};
use aws_sdk_xray::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};

use super::AwsError;

/// The X-Ray endpoint the SDK would call: the override, else the region's (FIPS or dual-stack
/// when `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT` or the profile ask for it).
pub async fn resolve(
    sdk: &SdkConfig,
    region: &Region,
    endpoint: Option<&str>,
) -> Result<String, AwsError> {
    if let Some(endpoint) = endpoint {
        return Ok(endpoint.trim_end_matches('/').to_owned());
    }
    let err = |why: String| AwsError::Endpoint {
        region: region.to_string(),
        why,
    };
    let params = Params::builder()
        .region(region.to_string())
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .set_endpoint(sdk.endpoint_url().map(str::to_owned))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resolved = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(resolved.url().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_is_the_regions_fips_where_asked_or_the_override() {
        let resolve = |fips: bool, region: &str, endpoint: Option<&str>| {
            let sdk = SdkConfig::builder().use_fips(fips).build();
            let region = Region::new(region.to_owned());
            let endpoint = endpoint.map(str::to_owned);
            async move {
                super::resolve(&sdk, &region, endpoint.as_deref())
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(
            resolve(false, "eu-west-1", None).await,
            Ok("https://xray.eu-west-1.amazonaws.com".into())
        );
        assert_eq!(
            resolve(true, "us-east-1", None).await,
            Ok("https://xray-fips.us-east-1.amazonaws.com".into())
        );
        assert_eq!(
            resolve(false, "cn-north-1", None).await,
            Ok("https://xray.cn-north-1.amazonaws.com.cn".into())
        );
        assert_eq!(
            resolve(true, "us-east-1", Some("http://127.0.0.1:4000/")).await,
            Ok("http://127.0.0.1:4000".into())
        );
    }

    #[tokio::test]
    async fn the_sdk_endpoint_url_setting_is_honoured() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://localhost:4566/")
            .build();
        let region = Region::new("us-west-2");
        assert_eq!(
            resolve(&sdk, &region, None)
                .await
                .map_err(|e| e.to_string()),
            Ok("http://localhost:4566".into())
        );
    }
}
