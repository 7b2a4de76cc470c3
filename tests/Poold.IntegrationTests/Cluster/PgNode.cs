namespace Poold.IntegrationTests.Cluster;

/// <summary>One PostgreSQL server of a <see cref="PgCluster"/>.</summary>
internal sealed class PgNode(int index, string dataDirectory, string logFile)
{
    public int Index { get; } = index;

    public string Name => Index == 0 ? "primary" : $"replica{Index}";

    public string Host { get; } = "127.0.0.1";

    public int Port { get; set; }

    public string DataDirectory { get; } = dataDirectory;

    public string LogFile { get; } = logFile;

    public bool Running { get; set; }

    public override string ToString() => $"{Name} (node {Index}, port {Port})";
}
