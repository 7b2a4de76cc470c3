using System.Globalization;
using System.Runtime.InteropServices;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Cluster;

/// <summary>Faults sent as signals to every process of a node (postmaster and children): a crash, or a hung machine.</summary>
internal sealed partial class PgCluster
{
    private const int SigKill = 9;
    private const int SigCont = 18;
    private const int SigStop = 19;

    /// <summary>SIGKILL to the postmaster and all its children at once, as a machine that lost power.</summary>
    public async Task KillNodeHardAsync(int index)
    {
        var node = _nodes[index];
        var pids = NodeProcesses(node);
        Signal(pids, SigKill);
        node.Running = false;
        await Poll.UntilAsync(() => Task.FromResult(pids.All(pid => !System.IO.Directory.Exists($"/proc/{pid}"))), TimeSpan.FromSeconds(30),
            $"the processes of {node} to be gone");
    }

    /// <summary>SIGSTOP to the postmaster and all its children: the node keeps its sockets open but answers nothing.</summary>
    public void FreezeNode(int index) => Signal(NodeProcesses(_nodes[index]), SigStop);

    /// <summary>SIGCONT to everything <see cref="FreezeNode"/> stopped.</summary>
    public void ThawNode(int index) => Signal(NodeProcesses(_nodes[index]), SigCont);

    /// <summary>The postmaster's pid (from postmaster.pid) and the pids of its children (from /proc).</summary>
    private static List<int> NodeProcesses(PgNode node)
    {
        var postmaster = int.Parse(File.ReadLines(Path.Combine(node.DataDirectory, "postmaster.pid")).First(), CultureInfo.InvariantCulture);
        var pids = new List<int> { postmaster };
        foreach (var dir in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue; // exited meanwhile
            }

            // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (int.Parse(fields[1], CultureInfo.InvariantCulture) == postmaster)
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    private static void Signal(IEnumerable<int> pids, int signal)
    {
        foreach (var pid in pids)
        {
            if (NativeKill(pid, signal) != 0 && Marshal.GetLastPInvokeError() != 3 /* ESRCH: already gone */)
            {
                throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int NativeKill(int pid, int signal);
}
