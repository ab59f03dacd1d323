# The program's process in a Ruby sandbox, started by launchers/fork_launcher.pl before the
# program arrives, as `ruby -e <this> <source>`: Ruby boots (RUBYOPT's prelude too), then waits
# on fd 3 for the go (a byte; EOF: end quietly), then runs the source as `ruby <source>` would.
# What `ruby main.rb` shows that `load` alone would not is put back: $0 and __FILE__ alike,
# DATA after __END__, an uncaught exception's backtrace without this script's frames and with
# the program's top level called <main>, a syntax error of the program as Ruby reports one.
# (`caller` from the program's top level still names this script's two frames.)
# No local variable here: the program's top level is a scope of its own (load's), but keep it so.
exit!(0) if IO.new(3).read(1).nil?
$0 = ARGV.shift
if File.binread($0) =~ /^__END__\r?$\n?/
  # As Ruby's own DATA: the program's file, read from the line after __END__.
  Object.const_set(:DATA, File.new($0, "r"))
  DATA.seek($~.end(0))
end
begin
  load $0
rescue Exception => e # rubocop:disable Lint/RescueException - every end is the program's to report
  raise if e.is_a?(SystemExit)
  if e.is_a?(SyntaxError) && e.backtrace&.first&.start_with?("-e:")
    # The program's own file did not parse: Ruby says only where and why.
    $stderr.write(e.message.end_with?("\n") ? e.message : "#{e.message}\n")
    exit 1
  end
  program = $0
  cause = e
  until cause.nil?
    # Ruby's report of an uncaught exception (and of its causes) asks each one's backtrace;
    # backtrace_locations stay whole, for error_highlight's underline of the failing call.
    cause.define_singleton_method(:backtrace) do
      super()&.filter_map do |line|
        next if line.start_with?("-e:")

        line.start_with?("#{program}:") ? line.sub("<top (required)>", "<main>") : line
      end
    end
    cause = cause.cause
  end
  # Re-raised as it is (its backtrace kept): Ruby reports it, and exits 1 or dies of its signal.
  raise e
end
