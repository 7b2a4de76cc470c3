using SharpFuzz;

namespace Poold.Fuzz;

/// <summary>
/// <c>Poold.Fuzz TARGET</c>: runs one target under afl-fuzz (SharpFuzz's out-of-process loop); <c>Poold.Fuzz list</c>
/// names the targets; <c>Poold.Fuzz TARGET FILE...</c> replays inputs once each, without the fuzzer. scripts/fuzz.sh
/// builds, instruments and runs it.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args is ["list"])
        {
            foreach (var name in FuzzTargets.All.Keys)
            {
                Console.WriteLine(name);
            }

            return 0;
        }

        if (args.Length == 0 || !FuzzTargets.All.TryGetValue(args[0], out var target))
        {
            Console.Error.WriteLine($"usage: Poold.Fuzz list | TARGET [FILE...]   (targets: {string.Join(", ", FuzzTargets.All.Keys)})");
            return 2;
        }

        if (args.Length > 1)
        {
            foreach (var file in args[1..])
            {
                target(File.ReadAllBytes(file));
                Console.WriteLine($"{file}: ok");
            }

            return 0;
        }

        Fuzzer.OutOfProcess.Run(stream =>
        {
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            target(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
        });
        return 0;
    }
}
