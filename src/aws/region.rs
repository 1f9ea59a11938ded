//! Which AWS region the daemon uses, and where that came from.
//!
//! In: `-n/--region` (or the config file's `Region`), local mode, the [`Env`], and lookups
//! that read files or the network (`RegionLookups`). Out: the region and its source in
//! words (for the banner), or [`AwsError::NoRegion`], which names every place looked at, or
//! [`AwsError::InvalidRegion`] for a region that cannot be part of a host name (checked before
//! anything puts it in one).
//!
//! The original daemon's order, first found wins (blank values count as unset):
//! 1. `-n/--region` or the config file's `Region`;
//! 2. `AWS_REGION`;
//! 3. unless `-o/--local-mode`: the ECS task metadata file (only when
//!    `ECS_ENABLE_CONTAINER_METADATA=true`, file `ECS_CONTAINER_METADATA_FILE`, region taken
//!    from `TaskARN`), then the ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`,
//!    ours), then EC2 instance metadata (IMDSv2);
//! 4. with `-o`: the SDK's own region: `AWS_DEFAULT_REGION`, then the AWS profile's `region`.
//!
//! The order is `resolve`, a function of its inputs: tests hand it made-up lookups.

use aws_config::Region;
use aws_config::meta::region::ProvideRegion;

use super::AwsError;
use super::IMDS_TIMEOUT;
use super::env::Env;
use super::metadata::{Metadata, direct_get};

/// The lookups behind the region order that read files or the network, each `None` when it
/// has no region (having said why at the level it deserves).
pub(crate) trait RegionLookups {
    /// The ECS task metadata file's task ARN region.
    async fn ecs_metadata_file(&self) -> Option<String>;
    /// The ECS task metadata endpoint v4's task ARN region.
    async fn ecs_task_endpoint(&self) -> Option<String>;
    /// EC2 instance metadata's region.
    async fn instance_metadata(&self) -> Option<String>;
    /// The AWS profile's region (local mode only).
    async fn profile(&self) -> Option<String>;
}

/// The region, in the original daemon's order (see the module docs), and its source in words.
/// A region found anywhere is checked before it is used ([`crate::config::is_valid_region`]):
/// it goes into host names (`xray.REGION.amazonaws.com`), so one that is not a single DNS label
/// is refused ([`AwsError::InvalidRegion`]) rather than looked up.
pub(crate) async fn resolve(
    flag: Option<&str>,
    local_mode: bool,
    env: &Env,
    lookups: &impl RegionLookups,
) -> Result<(Region, &'static str), AwsError> {
    let (region, source) = find(flag, local_mode, env, lookups).await?;
    let region = region.trim();
    if !crate::config::is_valid_region(region) {
        return Err(AwsError::InvalidRegion {
            region: region.to_owned(),
            from: source,
        });
    }
    Ok((Region::new(region.to_owned()), source))
}

/// The first region found, in the order of the module docs, unchecked.
async fn find(
    flag: Option<&str>,
    local_mode: bool,
    env: &Env,
    lookups: &impl RegionLookups,
) -> Result<(String, &'static str), AwsError> {
    if let Some(r) = flag.filter(|r| !r.trim().is_empty()) {
        return Ok((r.to_owned(), "command line or config file"));
    }
    if let Some(r) = env.get("AWS_REGION") {
        return Ok((r.to_owned(), "AWS_REGION"));
    }
    if local_mode {
        if let Some(r) = env.get("AWS_DEFAULT_REGION") {
            return Ok((r.to_owned(), "environment (AWS_DEFAULT_REGION)"));
        }
        if let Some(r) = lookups.profile().await {
            return Ok((r, "AWS profile"));
        }
    } else {
        if let Some(r) = lookups.ecs_metadata_file().await {
            return Ok((r, "ECS metadata file"));
        }
        if let Some(r) = lookups.ecs_task_endpoint().await {
            return Ok((r, "ECS task metadata endpoint"));
        }
        if let Some(r) = lookups.instance_metadata().await {
            return Ok((r, "EC2 instance metadata"));
        }
    }
    Err(AwsError::NoRegion { local_mode })
}

/// The real lookups: files, the ECS endpoint and IMDS through [`Metadata`] (direct, short
/// timeouts), the profile through `aws-config`.
#[derive(Debug)]
pub(crate) struct HostLookups<'a> {
    /// Where the ECS variables come from.
    pub(crate) env: &'a Env,
    /// Instance metadata.
    pub(crate) metadata: &'a Metadata,
}

impl RegionLookups for HostLookups<'_> {
    async fn ecs_metadata_file(&self) -> Option<String> {
        if !self.metadata.enabled() {
            return None;
        }
        ecs_file_region(self.env)
    }

    async fn ecs_task_endpoint(&self) -> Option<String> {
        if !self.metadata.enabled() {
            return None;
        }
        let base = self.env.get("ECS_CONTAINER_METADATA_URI_V4")?;
        let url = format!("{}/task", base.trim_end_matches('/'));
        match direct_get(&url, IMDS_TIMEOUT * 2).await {
            Ok((200, body)) => region_from_task_arn_json(&body),
            Ok((status, _)) => {
                tracing::warn!(
                    "The ECS task metadata endpoint {url} answered {status}; looking elsewhere"
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    "The ECS task metadata endpoint {url} failed: {e}; looking elsewhere"
                );
                None
            }
        }
    }

    async fn instance_metadata(&self) -> Option<String> {
        self.metadata
            .imds_get("/latest/meta-data/placement/region")
            .await
    }

    async fn profile(&self) -> Option<String> {
        // aws-config finds the profile (AWS_PROFILE, AWS_CONFIG_FILE) itself; see `env`.
        aws_config::profile::ProfileFileRegionProvider::new()
            .region()
            .await
            .map(|r| r.to_string())
    }
}

/// The region from the ECS metadata file, when ECS says it wrote one.
fn ecs_file_region(env: &Env) -> Option<String> {
    if !env.is_true("ECS_ENABLE_CONTAINER_METADATA") {
        return None;
    }
    let path = env.get("ECS_CONTAINER_METADATA_FILE")?;
    match std::fs::read(path) {
        Ok(bytes) => {
            let region = region_from_task_arn_json(&bytes);
            if region.is_none() {
                tracing::warn!(
                    "The ECS metadata file {path} has no TaskARN with a region (yet); \
                     looking elsewhere"
                );
            }
            region
        }
        Err(e) => {
            tracing::warn!("Cannot read the ECS metadata file {path}: {e}; looking elsewhere");
            None
        }
    }
}

/// The region inside a task ARN (`arn:aws:ecs:REGION:ACCOUNT:task/...`) in a JSON document's
/// `TaskARN`.
pub fn region_from_task_arn_json(json: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(json).ok()?;
    let arn = doc.get("TaskARN")?.as_str()?;
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made-up answers, and which lookups were asked.
    #[derive(Default)]
    struct Answers {
        ecs_file: Option<&'static str>,
        ecs_endpoint: Option<&'static str>,
        imds: Option<&'static str>,
        profile: Option<&'static str>,
        asked: std::sync::Mutex<Vec<&'static str>>,
    }

    impl Answers {
        fn answer(&self, name: &'static str, value: Option<&str>) -> Option<String> {
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(name);
            }
            value.map(str::to_owned)
        }

        fn asked(&self) -> Vec<&'static str> {
            self.asked.lock().map(|a| a.clone()).unwrap_or_default()
        }
    }

    impl RegionLookups for Answers {
        async fn ecs_metadata_file(&self) -> Option<String> {
            self.answer("ecs file", self.ecs_file)
        }
        async fn ecs_task_endpoint(&self) -> Option<String> {
            self.answer("ecs endpoint", self.ecs_endpoint)
        }
        async fn instance_metadata(&self) -> Option<String> {
            self.answer("imds", self.imds)
        }
        async fn profile(&self) -> Option<String> {
            self.answer("profile", self.profile)
        }
    }

    fn all_sources() -> Answers {
        Answers {
            ecs_file: Some("eu-west-3"),
            ecs_endpoint: Some("sa-east-1"),
            imds: Some("eu-west-2"),
            profile: Some("ap-southeast-2"),
            ..Answers::default()
        }
    }

    async fn region(
        flag: Option<&str>,
        local_mode: bool,
        env: &[(&str, &str)],
        answers: &Answers,
    ) -> Result<(String, &'static str), String> {
        resolve(
            flag,
            local_mode,
            &Env::from_pairs(env.iter().copied()),
            answers,
        )
        .await
        .map(|(r, source)| (r.to_string(), source))
        .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_flag_beats_aws_region_beats_ecs_beats_instance_metadata() {
        let env = [
            ("AWS_REGION", "us-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
        ];
        let answers = all_sources();
        assert_eq!(
            region(Some("eu-central-1"), false, &env, &answers).await,
            Ok(("eu-central-1".into(), "command line or config file"))
        );
        assert_eq!(
            region(None, false, &env, &answers).await,
            Ok(("us-west-1".into(), "AWS_REGION"))
        );
        assert!(answers.asked().is_empty(), "{:?}", answers.asked());
        assert_eq!(
            region(None, false, &[], &answers).await,
            Ok(("eu-west-3".into(), "ECS metadata file"))
        );
        let answers = Answers {
            ecs_file: None,
            ..all_sources()
        };
        assert_eq!(
            region(None, false, &[], &answers).await,
            Ok(("sa-east-1".into(), "ECS task metadata endpoint"))
        );
        let answers = Answers {
            ecs_file: None,
            ecs_endpoint: None,
            ..all_sources()
        };
        assert_eq!(
            region(
                None,
                false,
                &[("AWS_DEFAULT_REGION", "us-east-2")],
                &answers
            )
            .await,
            Ok(("eu-west-2".into(), "EC2 instance metadata"))
        );
        // Without -o, AWS_DEFAULT_REGION and the profile are not the original's sources.
        assert_eq!(answers.asked(), ["ecs file", "ecs endpoint", "imds"]);
    }

    #[tokio::test]
    async fn local_mode_takes_aws_default_region_then_the_profile_never_metadata() {
        let answers = all_sources();
        assert_eq!(
            region(None, true, &[("AWS_DEFAULT_REGION", "us-east-2")], &answers).await,
            Ok(("us-east-2".into(), "environment (AWS_DEFAULT_REGION)"))
        );
        assert_eq!(
            region(None, true, &[], &answers).await,
            Ok(("ap-southeast-2".into(), "AWS profile"))
        );
        assert_eq!(
            region(None, true, &[("AWS_REGION", "us-west-1")], &answers).await,
            Ok(("us-west-1".into(), "AWS_REGION"))
        );
        assert_eq!(answers.asked(), ["profile"]);
    }

    #[tokio::test]
    async fn blank_values_are_skipped() {
        let answers = Answers {
            ecs_file: None,
            ecs_endpoint: None,
            ..all_sources()
        };
        let env = [("AWS_REGION", " "), ("AWS_DEFAULT_REGION", "")];
        assert_eq!(
            region(Some(""), false, &env, &answers).await,
            Ok(("eu-west-2".into(), "EC2 instance metadata"))
        );
        assert_eq!(
            region(Some("  "), true, &env, &answers).await,
            Ok(("ap-southeast-2".into(), "AWS profile"))
        );
    }

    #[tokio::test]
    async fn no_region_anywhere_says_where_it_looked_and_how_to_give_one() {
        let none = Answers::default();
        let err = region(None, false, &[], &none)
            .await
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("ECS task metadata and EC2 instance metadata"),
            "{err}"
        );
        assert!(err.contains("-n REGION") && err.contains("use -o"), "{err}");
        let err = region(None, true, &[], &none)
            .await
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("AWS_DEFAULT_REGION and the AWS profile"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_region_that_is_not_one_dns_label_is_refused_wherever_it_came_from() {
        let answers = Answers::default();
        let err = region(None, false, &[("AWS_REGION", "x.y")], &answers).await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("\"x.y\"") && e.contains("AWS_REGION")),
            "{err:?}"
        );
        let answers = Answers {
            imds: Some("evil.example.com/"),
            ..Answers::default()
        };
        let err = region(None, false, &[], &answers).await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("EC2 instance metadata")),
            "{err:?}"
        );
        assert_eq!(
            region(Some(" us-gov-west-1 "), false, &[], &Answers::default()).await,
            Ok(("us-gov-west-1".into(), "command line or config file"))
        );
    }

    #[test]
    fn region_comes_from_the_task_arn() {
        let doc = br#"{"Cluster":"c","TaskARN":"arn:aws:ecs:eu-west-3:123456789012:task/c/abc"}"#;
        assert_eq!(region_from_task_arn_json(doc), Some("eu-west-3".into()));
        assert_eq!(region_from_task_arn_json(br#"{"TaskARN":"x"}"#), None);
        assert_eq!(region_from_task_arn_json(b"{"), None);
        assert_eq!(region_from_task_arn_json(br#"{"Cluster":"c"}"#), None);
    }

    #[test]
    fn the_ecs_metadata_file_is_read_only_when_ecs_says_it_wrote_one()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ecs-metadata.json");
        std::fs::write(
            &path,
            br#"{"TaskARN":"arn:aws:ecs:ap-northeast-1:123456789012:task/c/abc"}"#,
        )?;
        let file = path.to_str().ok_or("temporary path is not UTF-8")?;
        let on = [
            ("ECS_ENABLE_CONTAINER_METADATA", "True"),
            ("ECS_CONTAINER_METADATA_FILE", file),
        ];
        assert_eq!(
            ecs_file_region(&Env::from_pairs(on)).as_deref(),
            Some("ap-northeast-1")
        );
        let off = [("ECS_CONTAINER_METADATA_FILE", file)];
        assert_eq!(ecs_file_region(&Env::from_pairs(off)), None);
        let missing = [
            ("ECS_ENABLE_CONTAINER_METADATA", "true"),
            (
                "ECS_CONTAINER_METADATA_FILE",
                "/nonexistent/ecs-metadata.json",
            ),
        ];
        assert_eq!(ecs_file_region(&Env::from_pairs(missing)), None);
        Ok(())
    }
}
