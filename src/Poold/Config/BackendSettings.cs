namespace Poold.Config;

/// <summary>
/// One <c>backend_*N</c> slot. A node exists when <c>backend_portN</c> is set; slots below the highest configured
/// number without a port are present but unused, as in pgpool-II.
/// </summary>
internal sealed record BackendSettings(
    int Id,
    bool IsConfigured,
    string Hostname,
    int Port,
    double Weight,
    string DataDirectory,
    BackendFlags Flags,
    string ApplicationName)
{
    /// <summary>Weight divided by the sum of all configured weights (0 when they sum to 0), as pgpool shows it.</summary>
    public double NormalizedWeight { get; init; }

    /// <summary><c>backend_sslmodeN</c>.</summary>
    public BackendTlsMode TlsMode { get; init; }

    /// <summary><c>backend_ssl_ca_certN</c> as written (relative to the configuration directory), or 'system'.</summary>
    public string SslCaCert { get; init; } = "";

    /// <summary><c>backend_require_authN</c>.</summary>
    public BackendAuthSet RequireAuth { get; init; } = BackendAuthSet.Any;

    /// <summary>A host name beginning with '/' is a Unix-socket directory; empty means the default socket directory.</summary>
    public bool IsUnixSocket => Hostname.Length == 0 || Hostname.StartsWith('/');

    public bool AllowsFailover => !Flags.HasFlag(BackendFlags.DisallowToFailover);

    public bool AlwaysPrimary => Flags.HasFlag(BackendFlags.AlwaysPrimary);

    public override string ToString() => $"node {Id} {Hostname}:{Port}";
}
