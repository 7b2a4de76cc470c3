using BenchmarkDotNet.Attributes;
using Poold.Config;

namespace Poold.Benchmarks.Config;

/// <summary>Reading a full pgpool.conf: runs at start and on every reload.</summary>
[MemoryDiagnoser]
public class ConfigLoadBench
{
    private string _text = "";

    [GlobalSetup]
    public void Setup()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "Poold.sln")))
        {
            dir = Path.GetDirectoryName(dir) ?? throw new InvalidOperationException("Poold.sln not found");
        }

        _text = File.ReadAllText(Path.Combine(dir, "etc", "poold.conf"));
    }

    [Benchmark]
    public int LexAndBuild()
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfLexer.Parse(_text, "poold.conf", entries, diagnostics);
        return SettingsBuilder.Build(entries, "/etc/poold.conf").Diagnostics.Count + entries.Count;
    }
}
