using System.Diagnostics;
using Poold.IntegrationTests.Support;

namespace Poold.ContainerTests;

/// <summary>
/// Run-wide set-up of the container tests: Testcontainers pulls nothing and starts no Ryuk (no registry is reachable;
/// each test removes its own containers), containers are reached through ports published on loopback, and the
/// local image that scripts/pg-image.sh builds must be there. Without a Docker engine or the image, every test is
/// skipped with the reason.
/// </summary>
[SetUpFixture]
public sealed class DockerEnvironment
{
    /// <summary>The local PostgreSQL 15 image (scripts/pg-image.sh).</summary>
    public const string Image = "poold-test/postgres:15";

    /// <summary>Why the tests cannot run here, or null when they can.</summary>
    public static string? Unavailable { get; private set; }

    [OneTimeSetUp]
    public async Task CheckDocker()
    {
        // Read by Testcontainers when it first initialises, which is after this.
        Environment.SetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED", "true");
        Environment.SetEnvironmentVariable("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1");
        try
        {
            var (exit, _, stderr) = await DockerAsync("image", "inspect", Image);
            if (exit != 0)
            {
                Unavailable = $"no Docker engine or no image {Image} (run scripts/pg-image.sh as root): {stderr.Trim()}";
            }
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
        {
            Unavailable = $"no docker command: {e.Message}";
        }
    }

    /// <summary>Runs the docker CLI to its end (60 s at most).</summary>
    public static Task<(int ExitCode, string Stdout, string Stderr)> DockerAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("docker");
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(60));
    }

    /// <summary>Runs the docker CLI and fails the test when it fails.</summary>
    public static async Task DockerOrFailAsync(params string[] arguments)
    {
        var (exit, _, stderr) = await DockerAsync(arguments);
        Assert.That(exit, Is.Zero, $"docker {string.Join(' ', arguments)}: {stderr}");
    }
}
